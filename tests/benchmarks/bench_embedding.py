"""Benchmark of stages 2 to 5 (features, pca, autoencoder, layout).

What it measures, in one run:

1. Feature throughput. The pipeline's `XceptionFeatures(weights, batch_size=8).transform`
   on 96 frames against the bare network, on the same crops in batches of 16 (8 frames
   x 2 crops), in the runtime and precision the pipeline picks (`load_xception`: OpenVINO
   when installed, else Keras; bfloat16 on CPUs with AVX-512 BF16 or AMX, else float32)
   with the same weights. Bare Keras is `keras.applications.Xception(include_top=False,
   pooling="avg")` called directly through a `tf.function`; bare OpenVINO is the compiled
   network the pipeline uses, called on ready uint8 crops (its preprocessing is inside).
   (tests/benchmarks/bench_features.py compares the runtimes with each other.) The bare
   side gets its crops made and preprocessed beforehand, so it times the network alone; the pipeline
   side also reads the frames, crops and resizes them (in its background thread,
   overlapped with the network), casts and scales the pixels and copies the features
   out. Both are warmed up first (weights loaded, functions traced), then run
   alternately `--repeat` times; the median frames/s and crops/s are reported, and
   the pipeline's rate as a percentage of the bare network's (the aim is >= 90 %).
   Frames: the first 96 of ../shared/media/intel-sample-videos/car-detection.mp4
   (relative to the repo root; sampled with `sample_source`, one in 3, 533x300)
   when it exists, else random pixels of the same size.

2. PCA, autoencoder and layout, for each of `--sizes` frames (default 10k and 100k).
   Synthetic features stand in for Xception's: float16, 4096-d, clustered points in
   a 32-d subspace plus noise, written to a memmap file so they are on disk, not in
   RAM, as in the pipeline. Each size runs in a fresh child process (this script
   with a hidden --child flag), which times each step:
     PCA fit                StreamingPCA(256).fit over batches of 2048 rows of the memmap
     PCA transform          the same batches projected into a float32 memmap on disk
     autoencoder fit        TripletAutoencoder().fit on that memmap, the product's defaults
                            (or --epochs E), its neighbour graph's share printed beside it
     autoencoder transform  its 2D codes of every row
     layout                 RadialStretch().fit(codes).transform(codes)
     t-SNE                  sklearn.manifold.TSNE (defaults: 2-d, init="pca", perplexity
                            30, 1000 iterations, Barnes-Hut) on the 256-d PCA output, for
                            comparison; after the rest, and only up to 10k rows (at 100k
                            it would take too long for a benchmark run).
   Memory is the child's peak RSS, VmHWM from /proc/self/status: Linux carries
   ru_maxrss over fork+exec, so a child's ru_maxrss is never below the parent's RSS
   at spawn time, whereas VmHWM belongs to the new process image alone. The peak is
   reset before each step (writing 5 to /proc/self/clear_refs), so each step has its
   own peak; the pipeline's peak is the largest over the steps before t-SNE. RSS
   counts the pages of memory-mapped files the process has touched: the "mapped"
   figure is how much of a step's RSS they made up at its end (file-backed pages
   over those right after the imports). The kernel can drop them at any time, so
   peak RSS minus mapped is the memory a step really needs.

The figures are only meaningful on an otherwise idle machine, so each part also
reports how much CPU other processes used meanwhile (machine busy time from
/proc/stat minus this process's and its children's) and flags it above 0.2 cores.

Run from the repository root (this is not a pytest test):

    .venv/bin/python tests/benchmarks/bench_embedding.py [--weights PATH] [--repeat 3]
        [--sizes 10000,100000] [--epochs E] [--skip-features]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.benchmarks.procmem import OtherLoad, reset_peak  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

from workers.pipeline.arrays import open_array  # noqa: E402
from workers.pipeline.features import CROP, DIMENSIONS, XceptionFeatures, load_xception  # noqa: E402
from workers.pipeline.images import left_and_right_squares  # noqa: E402
from workers.pipeline.sampling import SamplingParams, sample_source  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
REAL_VIDEO = SHARED / "media" / "intel-sample-videos" / "car-detection.mp4"
N_FRAMES = 96
BATCH_FRAMES = 8  # per network call: 16 crops
PCA_COMPONENTS = 256
PCA_BATCH_ROWS = 2048
TSNE_MAX_ROWS = 10_000
MIB = 1024 * 1024
BUSY_CORES = 0.2  # other processes' average CPU use above which the figures are flagged


# ---------------------------------------------------------------- 1. feature throughput

def load_frames(scratch):
    """96 frames (N, 300, 533, 3) uint8 and where they come from."""
    if REAL_VIDEO.exists():
        folder = Path(scratch) / "frames"
        sample_source(REAL_VIDEO, folder, SamplingParams(every=3), checksum="bench")
        frames = open_array(folder, "frames")[:N_FRAMES]  # a memmap, as the pipeline reads it
        return frames, f"{len(frames)} frames {frames.shape[2]}x{frames.shape[1]} of {REAL_VIDEO.name}"
    frames = np.random.default_rng(0).integers(0, 256, size=(N_FRAMES, 300, 533, 3), dtype=np.uint8)
    return frames, f"{N_FRAMES} frames 533x300 of random pixels (no {REAL_VIDEO})"


def bare_network(weights, precision):
    """Keras's Xception as a tf.function: preprocessed float32 crops -> (batch, 2048)."""
    import keras
    import tensorflow as tf

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        if weights == "random":
            keras.utils.set_random_seed(0)
        model = keras.applications.Xception(include_top=False, weights=None if weights == "random" else weights,
                                            pooling="avg", input_shape=(CROP, CROP, 3))
    finally:
        keras.mixed_precision.set_global_policy(previous)

    @tf.function(input_signature=[tf.TensorSpec([None, CROP, CROP, 3], tf.float32)])
    def network(pixels):
        return model(pixels, training=False)

    return network


def premade_batches(frames, precision):
    """The crops of every batch of frames, ready for the bare network: uint8 for OpenVINO,
    preprocessed tensors for Keras."""
    batches = []
    for start in range(0, len(frames), BATCH_FRAMES):
        crops = np.stack([crop for frame in np.asarray(frames[start:start + BATCH_FRAMES])
                          for crop in left_and_right_squares(frame, CROP)])
        if precision.startswith("openvino-"):
            batches.append(crops)
            continue
        import keras
        import tensorflow as tf

        pixels = keras.applications.xception.preprocess_input(crops.astype(np.float32))
        batches.append(tf.constant(pixels))
    return batches


def time_pipeline(features, frames):
    start = time.perf_counter()
    features.transform(frames)
    return time.perf_counter() - start


def time_bare(network, batches):
    start = time.perf_counter()
    for pixels in batches:
        np.asarray(network(pixels))
    return time.perf_counter() - start


def feature_throughput(weights, repeat, scratch):
    frames, source = load_frames(scratch)
    print(f"feature throughput: {source}; loading and warming up both networks...", flush=True)
    features = XceptionFeatures(weights, batch_size=BATCH_FRAMES)
    features.transform(frames[:2 * BATCH_FRAMES])  # builds and traces the pipeline's network
    precision = load_xception(weights).precision
    openvino = precision.startswith("openvino-")
    network = load_xception(weights, precision) if openvino else bare_network(weights, precision)
    batches = premade_batches(frames, precision)
    np.asarray(network(batches[0]))  # traces the bare network

    pipeline_times, bare_times = [], []
    other = OtherLoad()
    for i in range(repeat):
        runs = [(pipeline_times, lambda: time_pipeline(features, frames)),
                (bare_times, lambda: time_bare(network, batches))]
        for times, run in runs if i % 2 == 0 else runs[::-1]:  # alternate which goes first
            times.append(run())
        print(f"  run {i + 1}/{repeat}: pipeline {pipeline_times[-1]:6.2f} s   "
              f"bare network {bare_times[-1]:6.2f} s", flush=True)
    pipeline_fps = len(frames) / statistics.median(pipeline_times)
    bare_fps = len(frames) / statistics.median(bare_times)
    return {"source": source, "frames": len(frames), "precision": precision, "repeat": repeat,
            "pipeline_fps": pipeline_fps, "bare_fps": bare_fps, "ratio": pipeline_fps / bare_fps,
            "other_cores": other.cores()}


# ---------------------------------------------------------------- 2. pca, autoencoder, layout

def write_synthetic_features(path, rows, seed=0, rank=32, clusters=64):
    """(rows, 4096) float16 on disk: clustered points in a rank-32 subspace, plus noise."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, DIMENSIONS), dtype=np.float32) / np.sqrt(rank)
    centers = rng.standard_normal((clusters, rank), dtype=np.float32)
    out = np.memmap(path, dtype=np.float16, mode="w+", shape=(rows, DIMENSIONS))
    for start in range(0, rows, 4096):
        n = min(4096, rows - start)
        latent = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, rank), dtype=np.float32)
        out[start:start + n] = latent @ basis + 0.3 * rng.standard_normal((n, DIMENSIONS), dtype=np.float32)
    out.flush()
    del out


def memory_status():
    """VmHWM (peak RSS) and RssFile (its file-backed part now) of this process, in MiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024 / MIB
    return values


class StepMeter:
    """Wall time, peak RSS and mapped-file RSS of each step, in `steps` by name."""

    def __init__(self):
        self.baseline = memory_status()
        self.steps = {}
        self.peaks_per_step = True

    @contextmanager
    def step(self, name):
        self.peaks_per_step &= reset_peak()
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        memory = memory_status()
        self.steps[name] = {"seconds": seconds, "peak_mib": memory["VmHWM"],
                            "mapped_mib": memory["RssFile"] - self.baseline["RssFile"]}
        print(f"  {name:<22}{seconds:8.1f} s   peak RSS {memory['VmHWM']:6.0f} MiB", flush=True)


def run_child(job):
    """In a fresh process: the embedding stages on one synthetic feature file; JSON to stdout."""
    import keras  # noqa: F401  (imported here, so no step's time includes importing it)
    import sklearn.decomposition  # noqa: F401
    import tensorflow  # noqa: F401
    from sklearn.manifold import TSNE

    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch
    from workers.pipeline.reduce import StreamingPCA

    rows = job["rows"]
    features = np.memmap(job["features"], dtype=np.float16, mode="r", shape=(rows, DIMENSIONS))
    meter = StepMeter()

    def batches():
        for start in range(0, rows, PCA_BATCH_ROWS):
            yield features[start:start + PCA_BATCH_ROWS]

    with meter.step("PCA fit"):
        pca = StreamingPCA(PCA_COMPONENTS).fit(batches(), rows)
    with meter.step("PCA transform"):
        vectors = np.memmap(job["vectors"], dtype=np.float32, mode="w+", shape=(rows, PCA_COMPONENTS))
        for start, batch in zip(range(0, rows, PCA_BATCH_ROWS), batches()):
            vectors[start:start + len(batch)] = pca.transform(batch)
        vectors.flush()
    graph_done = []  # when fit's progress passed the neighbour graph's share (its first 5 %)
    params = {} if job["epochs"] is None else {"epochs": job["epochs"]}
    with meter.step("autoencoder fit"):
        began = time.perf_counter()
        autoencoder = TripletAutoencoder(input_dim=PCA_COMPONENTS, seed=0, **params).fit(
            vectors, progress=lambda done: graph_done.append(time.perf_counter() - began) if done <= 0.05 else None)
    if autoencoder.uses_graph():
        print(f"    of which the neighbour graph {graph_done[-1]:.1f} s; {autoencoder.steps_} training steps",
              flush=True)
    with meter.step("autoencoder transform"):
        codes = autoencoder.transform(vectors)
    with meter.step("layout fit+transform"):
        RadialStretch().fit(codes).transform(codes)
    if rows <= TSNE_MAX_ROWS:
        with meter.step("t-SNE"):
            TSNE(n_components=2, init="pca", random_state=0).fit_transform(np.asarray(vectors))
    print(json.dumps({"rows": rows, "imports_mib": meter.baseline["VmHWM"], "steps": meter.steps,
                      "peaks_per_step": meter.peaks_per_step,
                      "explained_variance": pca.explained_variance_}))


def embedding_stages(rows, epochs, scratch):
    """Write `rows` synthetic features, then time the stages on them in a fresh process."""
    features = Path(scratch) / f"features-{rows}.f16"
    vectors = Path(scratch) / f"pca-{rows}.f32"
    print(f"embedding stages, {rows} frames: writing synthetic features...", flush=True)
    write_synthetic_features(features, rows)
    job = {"rows": rows, "features": str(features), "vectors": str(vectors), "epochs": epochs}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    # The child's progress lines come on stdout, its result last; its stderr (TensorFlow's
    # start-up messages) is shown only if it fails.
    other = OtherLoad()
    with tempfile.TemporaryFile(mode="w+") as errors:
        try:
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as child:
                for line in child.stdout:
                    if line.startswith("{"):
                        result = json.loads(line)
                    else:
                        print(line, end="", flush=True)
            if child.returncode:
                errors.seek(0)
                sys.exit(f"the child for {rows} frames failed:\n{errors.read()}")
        finally:
            features.unlink(missing_ok=True)
            vectors.unlink(missing_ok=True)
    return {**result, "other_cores": other.cores()}


# ---------------------------------------------------------------- report

def short(rows):
    return f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def busy_note(other_cores):
    return "; figures likely distorted: rerun on a quiet machine" if max(other_cores) > BUSY_CORES else ""


def print_rows(stages, names, value_of, show, with_ratio):
    """Rows of the stages table: one per name, a column per size, then last/first size.

    value_of(stage result, name) gives a number, a (number, note) pair or None."""
    for name in names:
        values = [value_of(s, name) for s in stages]
        cells = "".join(f"{'-' if v is None else show(v):>15}" for v in values)
        first, last = (v[0] if isinstance(v, tuple) else v for v in (values[0], values[-1]))
        ratio = f"{last / first:>10.2f}" if with_ratio and None not in (first, last) else ""
        print(f"  {name:<26}{cells}{ratio}")


def print_tables(rates, stages, epochs, weights):
    if rates:
        print()
        print(f"Feature throughput: {rates['source']}; weights {weights}; precision {rates['precision']}; "
              f"batches of {BATCH_FRAMES} frames; median of {rates['repeat']}")
        print(f"  {'':<30}{'frames/s':>10}{'crops/s':>10}")
        print(f"  {'pipeline (XceptionFeatures)':<30}{rates['pipeline_fps']:>10.2f}{2 * rates['pipeline_fps']:>10.2f}")
        print(f"  {'bare network (network only)':<30}{rates['bare_fps']:>10.2f}{2 * rates['bare_fps']:>10.2f}")
        verdict = "ok" if rates["ratio"] >= 0.9 else "LOW"
        print(f"  {'pipeline/bare':<30}{rates['ratio']:>10.1%}  {verdict}")
        print(f"  (other processes used {rates['other_cores']:.2f} of {os.cpu_count()} cores on average meanwhile"
              f"{busy_note([rates['other_cores']])})")

    sizes = [s["rows"] for s in stages]
    ratio_label = f"{short(sizes[-1])}/{short(sizes[0])}" if len(sizes) > 1 else ""
    steps = [name for name in stages[0]["steps"] if name != "t-SNE"]
    for s in stages:  # the pipeline's totals: all steps but t-SNE
        s["steps"]["total (no t-SNE)"] = {
            "seconds": sum(s["steps"][name]["seconds"] for name in steps),
            "peak_mib": max(s["steps"][name]["peak_mib"] for name in steps)}
    print()
    print(f"Embedding stages on synthetic float16 {DIMENSIONS}-d features (memmap), a fresh process per size; "
          f"autoencoder epochs={epochs or 'default'}; t-SNE only up to {short(TSNE_MAX_ROWS)} frames")
    header = "".join(f"{short(n) + ' frames':>15}" for n in sizes) + f"{ratio_label:>10}"
    print(f"  {'seconds':<26}{header}")
    def seconds(s, name):
        return s["steps"][name]["seconds"] if name in s["steps"] else None

    print_rows(stages, [*steps, "total (no t-SNE)", "t-SNE"], seconds, lambda v: f"{v:.1f}", len(sizes) > 1)
    per_step = all(s["peaks_per_step"] for s in stages)
    print(f"  {'peak RSS MiB [mapped]':<26}{header}")

    def peak(s, name):
        if name == "after imports":
            return s["imports_mib"], None
        if name not in s["steps"]:
            return None
        return s["steps"][name]["peak_mib"], s["steps"][name].get("mapped_mib")

    def show(value):
        mib, mapped = value
        return f"{mib:.0f}" if mapped is None else f"{mib:.0f} [{mapped:.0f}]"

    print_rows(stages, ["after imports", *steps, "t-SNE", "total (no t-SNE)"], peak, show, len(sizes) > 1)
    print(f"  (VmHWM {'of each step' if per_step else 'cumulative (clear_refs refused)'}; [mapped]: "
          "file-backed pages of the memmaps in RSS at the step's end, droppable by the kernel)")
    print("  PCA explained variance: " + ", ".join(
        f"{short(s['rows'])} {s['explained_variance']:.1%}" for s in stages))
    others = ", ".join(f"{short(s['rows'])} {s['other_cores']:.2f}" for s in stages)
    print(f"  other processes used, of {os.cpu_count()} cores on average: {others}"
          f"{busy_note(s['other_cores'] for s in stages)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "random",
                        help="Xception weights: an .h5 path, 'imagenet' or 'random' (default: the shared "
                             "weights file if present, else random)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each feature extractor")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated frame counts for the stages")
    parser.add_argument("--epochs", type=int, default=None, help="autoencoder epochs (default: the product's)")
    parser.add_argument("--skip-features", action="store_true", help="time the stages after the features only")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one size, in a fresh process
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.repeat < 1 or (args.epochs is not None and args.epochs < 1) or min(sizes) < PCA_COMPONENTS:
        parser.error(f"--repeat and --epochs must be at least 1, sizes at least {PCA_COMPONENTS}")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as scratch:
        rates = None if args.skip_features else feature_throughput(args.weights, args.repeat, scratch)
        stages = [embedding_stages(rows, args.epochs, scratch) for rows in sizes]
    print_tables(rates, stages, args.epochs, args.weights)
    print(f"\ntotal time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
