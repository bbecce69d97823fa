"""Benchmark of Xception's runtimes on real frames: Keras float32 (the reference), Keras
mixed_bfloat16, OpenVINO bf16 and OpenVINO f32, as workers/pipeline/features.py runs them.

What it measures, in one run:

- Frames: `--frames` frames (default 96, so 192 crops) spread evenly over the sample videos
  (`--media`, default ../shared/media/intel-sample-videos from the repository root, or
  ../../shared from a git worktree), sampled
  by the product itself (PyAV, fitted into 534x300), each frame's left and right squares
  resized to 299x299 as the features stage makes them.
- Conversion: the Keras network built from the weights, converted with openvino.convert_model
  and saved as IR (the weights are linked into a scratch folder, so the cache starts empty
  and stays there); then the time to read the cached IR and to compile it for each precision.
- Speed: crops/s at batches of 8 and 16 crops per call, over all the crops, for each runtime,
  in `--rounds` rounds (default 3) whose order turns each round, so that a busy moment
  falls on every runtime alike; the median of the rounds, and its ratio to Keras float32's
  in the same run. Beside OpenVINO as the product runs it (throughput hint, each call split
  over asynchronous requests), OpenVINO with the latency hint and synchronous calls: the
  other way the product could have run it.
- The same two ways in two processes at once, as a worker's two pool processes describe
  on 2 cores: the crops/s of both together.
- Quality against Keras float32 on the same crops: the least cosine of a crop's features,
  and the top-10 neighbour overlap (for each crop, the share of its 10 nearest crops by
  cosine under Keras float32 that are among its 10 nearest under the runtime; the mean).
- Peak RSS of a fresh process that loads the runtime and describes the crops once (OpenVINO
  from the cached IR: without TensorFlow).

The figures are only meaningful on an otherwise idle machine: the run reports how much CPU
other processes used meanwhile (flagged above 0.2 cores).

Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/bench_features.py [--weights FILE.h5] [--media FOLDER]
        [--frames 96] [--rounds 3]

--weights defaults to XCEPTION_WEIGHTS when that is a file, else
xception_weights_tf_dim_ordering_tf_kernels_notop.h5 in that shared folder's weights/.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

from tests.benchmarks.procmem import OtherLoad, peak_mib  # noqa: E402
from workers.pipeline import xception_openvino  # noqa: E402
from workers.pipeline.features import CROP, load_xception  # noqa: E402

# The shared folder beside the repository (or beside the folder of its git worktrees).
SHARED = next((folder for folder in (REPO.parent / "shared", REPO.parent.parent / "shared") if folder.is_dir()),
              REPO.parent / "shared")
DEFAULT_WEIGHTS = SHARED / "weights" / xception_openvino.IMAGENET_FILE
DEFAULT_MEDIA = SHARED / "media" / "intel-sample-videos"
BATCHES = (8, 16)  # crops per call
REFERENCE = "Keras float32"
RUNTIMES = {  # name in the table -> precision name (None: OpenVINO, latency hint, synchronous calls)
    REFERENCE: "float32",
    "Keras mixed_bfloat16": "mixed_bfloat16",
    "OpenVINO bf16 (throughput, async)": "openvino-bf16",
    "OpenVINO f32 (throughput, async)": "openvino-f32",
    "OpenVINO bf16 (latency, sync)": None,
    "OpenVINO f32 (latency, sync)": None,
}
BUSY_CORES = 0.2


def sample_crops(media, frames_wanted, scratch):
    """(crops, what they are): `frames_wanted` frames spread over the videos, two crops each."""
    from workers.pipeline.arrays import open_array
    from workers.pipeline.files import media_kind
    from workers.pipeline.images import left_and_right_squares
    from workers.pipeline.sampling import SamplingParams, sample_source

    videos = sorted(p for p in Path(media).rglob("*") if p.is_file() and media_kind(p) == "video")
    if not videos:
        raise SystemExit(f"no videos in {media}: give --media")
    stores = []
    for number, video in enumerate(videos):
        folder = scratch / "frames" / str(number)
        sample_source(video, folder, SamplingParams(every=10), checksum=str(number))
        stores.append(open_array(folder, "frames"))
    every = [(store, row) for store in stores for row in range(len(store))]
    chosen = [every[int(i)] for i in np.linspace(0, len(every) - 1, min(frames_wanted, len(every)))]
    crops = np.stack([crop for store, row in chosen for crop in left_and_right_squares(np.asarray(store[row]), CROP)])
    return crops, f"{len(chosen)} frames ({len(crops)} crops) of {len(videos)} videos in {media}"


class LatencySync:
    """OpenVINO compiled with the latency hint, called synchronously: the alternative."""

    def __init__(self, place, hint):
        openvino = xception_openvino.import_openvino()
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(str(place / "xception.xml")), "CPU",
                                           {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})

    def __call__(self, crops):
        return np.array(self.compiled(crops)[0])


def describe_all(network, crops, batch):
    return np.concatenate([np.asarray(network(crops[i:i + batch])) for i in range(0, len(crops), batch)])


def rate(network, crops, batch):
    began = time.perf_counter()
    describe_all(network, crops, batch)
    return len(crops) / (time.perf_counter() - began)


def neighbours(features, k=10):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similar = unit @ unit.T
    np.fill_diagonal(similar, -np.inf)
    return np.argsort(-similar, axis=1)[:, :k]


def quality(features, reference):
    cosine = (features * reference).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(reference, axis=1)
    ours, theirs = neighbours(features), neighbours(reference)
    overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ours, theirs)])
    return float(cosine.min()), float(overlap)


def child(arguments):
    """In a fresh process: describe the crops with one runtime; print peak RSS or crops/s."""
    mode, precision, weights, models_dir, crops_file = arguments[:5]
    crops = np.load(crops_file)
    if precision.startswith("latency-"):
        network = LatencySync(Path(models_dir), precision.removeprefix("latency-"))
    else:
        network = load_xception(weights, precision, models_dir=models_dir)
    describe_all(network, crops[:16], 16)
    began = time.perf_counter()
    describe_all(network, crops, 16)
    print(json.dumps({"peak_mib": peak_mib(), "crops_per_s": len(crops) / (time.perf_counter() - began),
                      "tensorflow": "tensorflow" in sys.modules, "mode": mode}))


def run_children(jobs):
    """Start every (precision, ...) child at once; their answers."""
    processes = [subprocess.Popen([sys.executable, __file__, "--child", *map(str, job)], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True) for job in jobs]
    answers = []
    for process in processes:
        out, _ = process.communicate(timeout=1800)
        if process.returncode:
            raise SystemExit(f"a child failed: {process.args}")
        answers.append(json.loads(out.strip().splitlines()[-1]))
    return answers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="the Xception .h5 file (default: see the docstring)")
    parser.add_argument("--media", default=str(DEFAULT_MEDIA), help="a folder of videos")
    parser.add_argument("--frames", type=int, default=96, help="frames to describe (two crops each)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every runtime, interleaved")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    weights = Path(args.weights or (os.environ.get("XCEPTION_WEIGHTS") if os.path.isfile(
        os.environ.get("XCEPTION_WEIGHTS", "")) else DEFAULT_WEIGHTS))
    if not weights.is_file():
        raise SystemExit(f"no weights at {weights}: give --weights")
    scratch = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        report(weights, args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(weights, args, scratch):
    crops, what = sample_crops(args.media, args.frames, scratch)
    np.save(scratch / "crops.npy", crops)
    print(f"{what}; weights {weights}", flush=True)
    (scratch / "weights").mkdir()
    linked = scratch / "weights" / weights.name  # the IR is cached beside it: in the scratch folder
    linked.symlink_to(weights.resolve())
    models_dir = scratch / "converted"

    began = time.perf_counter()
    _, place = xception_openvino.read_or_convert(str(linked), models_dir)
    converted = time.perf_counter() - began
    began = time.perf_counter()
    model, _ = xception_openvino.read_or_convert(str(linked), models_dir)
    read = time.perf_counter() - began
    openvino = xception_openvino.import_openvino()
    compiled = {}
    for hint in ("bf16", "f32"):
        began = time.perf_counter()
        openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                     "PERFORMANCE_HINT": "THROUGHPUT"})
        compiled[hint] = time.perf_counter() - began
    print(f"OpenVINO: built, converted and saved in {converted:.1f} s (IR in {place.relative_to(scratch)}); "
          f"the cached IR read in {read:.2f} s; compiled in {compiled['bf16']:.2f} s (bf16), "
          f"{compiled['f32']:.2f} s (f32)", flush=True)

    networks = {}
    for name, precision in RUNTIMES.items():
        if precision is None:
            networks[name] = LatencySync(place, "bf16" if "bf16" in name else "f32")
        else:
            networks[name] = load_xception(str(linked), precision, models_dir=models_dir)
    features = {name: describe_all(network, crops, 16) for name, network in networks.items()}  # warm-up too
    for network in networks.values():
        describe_all(network, crops[:8], 8)

    rates = {(name, batch): [] for name in networks for batch in BATCHES}
    load = OtherLoad()
    names = list(networks)
    for number in range(args.rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for name in order:
            for batch in BATCHES:
                rates[name, batch].append(rate(networks[name], crops, batch))
        print(f"  round {number + 1}/{args.rounds}: " + ", ".join(
            f"{name} {rates[name, 16][-1]:.1f}" for name in names) + " crops/s at b16", flush=True)
    busy = load.cores()

    print("  two processes at once (crops/s of both together, batch 16)...", flush=True)
    pairs = {}
    for label, precision in (("OpenVINO bf16", "openvino-bf16"), ("OpenVINO f32", "openvino-f32")):
        hint = precision.removeprefix("openvino-")
        for way, child_precision in (("throughput, async", precision), ("latency, sync", f"latency-{hint}")):
            answers = run_children([("pair", child_precision, linked, place if "latency" in child_precision
                                     else models_dir, scratch / "crops.npy")] * 2)
            pairs[f"{label} ({way})"] = sum(answer["crops_per_s"] for answer in answers)
    print("  peak RSS of a fresh process per runtime...", flush=True)
    memory = {}
    for name, precision in RUNTIMES.items():
        if precision is not None:
            [answer] = run_children([("rss", precision, linked, models_dir, scratch / "crops.npy")])
            memory[name] = answer

    print()
    print(f"Xception on {what}; medians of {args.rounds} interleaved rounds; "
          f"vs {REFERENCE} in this run; {os.cpu_count()} cores")
    header = ("runtime", "crops/s b8", "crops/s b16", "vs Keras fp32 b8 / b16", "min cosine", "top-10 overlap",
              "peak RSS")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    medians = {key: statistics.median(values) for key, values in rates.items()}
    for name in names:
        cosine, overlap = quality(features[name], features[REFERENCE])
        ratios = " / ".join(f"{medians[name, b] / medians[REFERENCE, b]:.2f}" for b in BATCHES)
        rss = memory.get(name)
        rss_cell = f"{rss['peak_mib'] / 1024:.2f} GB" + ("" if rss["tensorflow"] else " (no TF)") if rss else "-"
        print(f"| {name} | {medians[name, 8]:.1f} | {medians[name, 16]:.1f} | {ratios} | {cosine:.4f} | "
              f"{overlap:.3f} | {rss_cell} |")
    print()
    print("Two processes at once, crops/s of both together (batch 16): " + "; ".join(
        f"{name} {value:.1f}" for name, value in pairs.items()))
    print(f"OpenVINO conversion {converted:.1f} s (Keras build included), cached IR read {read:.2f} s, "
          f"compile {compiled['bf16']:.2f} s bf16 / {compiled['f32']:.2f} s f32")
    note = "; figures likely distorted: rerun on a quiet machine" if busy > BUSY_CORES else ""
    print(f"(other processes used {busy:.2f} of {os.cpu_count()} cores on average during the rounds{note})")


if __name__ == "__main__":
    main()
