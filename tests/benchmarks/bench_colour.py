"""Benchmark of clip GIFs (issue 15): flicker by seeding, time, and GIF size against Pillow.

On 6 s clips of real videos (the mp4s of a folder, by default the sample media's three
scenes), decoded with `clip_frames` at `--fps` frames a second and 480 px wide:

1. Flicker (palette.flicker: mean Delta E where the source was still) at K = 4, 8, 16,
   Euclidean (k-means) and Manhattan (k-medians), for sequential seeding with and without
   `hold`, independent seeding and a global palette; the source's own flicker beside them.
   Medians over clips x seeds (`--seeds`) with [min-max]; "indep/seq" is the median of the
   per-run ratio independent / sequential (hold on, the default; and off). "error" is the
   mean Delta E between source and shown pixels (what hold costs in accuracy). ms/frame is
   quantize_clip's time per frame for sequential seeding.
2. Time to quantize a whole clip to 16 colours (Euclidean, sequential, hold on; decoding
   apart), median of 3 runs per clip. Aim: under 2 s on 2 cores.
3. GIF bytes: ours (sequential, hold, K = 16, Euclidean) and `pillow_gif` (Pillow's own
   median cut per frame, written the same way), with each one's flicker. Aim: ours smaller
   at equal or lower flicker.
Other processes' CPU load during the run is printed (timings beside other work mean little).

Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/bench_colour.py ../shared/media/intel-sample-videos [--fps 10] [--seeds 3]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.benchmarks.procmem import OtherLoad  # noqa: E402
from workers.pipeline.clip_frames import clip_frames  # noqa: E402
from workers.pipeline.gifs import pillow_gif, write_gif  # noqa: E402
from workers.pipeline.palette import flicker, quantize_clip, to_lab  # noqa: E402

SECONDS, WIDTH = 6.0, 480
KS = (4, 8, 16)
VARIANTS = {"seq+hold": ("sequential", True), "seq": ("sequential", False), "indep": ("independent", False),
            "global": ("global", True)}
AIM_RATIO, AIM_SECONDS = 3.0, 2.0


def shown(quantized):
    return [quantized.rgb(i) for i in range(len(quantized))]


def error(frames, quantized):
    return float(np.mean([np.linalg.norm(to_lab(f) - to_lab(quantized.rgb(i)), axis=2).mean()
                          for i, f in enumerate(frames)]))


def spread(values, digits=2):
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def clips(folder, fps):
    """(name, times, frames) of a 6 s clip from a third of the way into each mp4."""
    import av

    for path in sorted(Path(folder).glob("*.mp4")):
        try:
            with av.open(str(path)) as container:
                start = round(container.duration / 1_000_000 / 3, 1)
            times, frames = clip_frames(path, start, start + SECONDS, fps, WIDTH)
        except Exception as exc:  # a benchmark goes on with the other files
            print(f"skipped {path.name}: {exc}")
            continue
        yield f"{path.name}@{start:g}s", times, frames


def part_flicker(loaded, seeds):
    print("\n1. Flicker (mean Delta E where the source was still), medians over clips x seeds [min-max]")
    own = [flicker(frames, frames) for _, _, frames in loaded]
    print(f"   the sources' own: {spread(own)}")
    header = f"{'K':>3} {'distance':<9}" + "".join(f"{name:>19}" for name in VARIANTS)
    print(header + f"{'indep/seq+hold':>20}{'indep/seq':>18}{'error seq+hold':>20}{'error indep':>18}{'ms/frame':>10}")
    for k in KS:
        for distance in ("euclidean", "manhattan"):
            runs = {name: [] for name in VARIANTS}
            errors, ms = {"seq+hold": [], "indep": []}, []
            for _, _, frames in loaded:
                for seed in range(seeds):
                    for name, (seeding, hold) in VARIANTS.items():
                        if seeding == "global" and seed:
                            continue
                        start = time.perf_counter()
                        quantized = quantize_clip(frames, k, distance, seeding, seed=seed, hold=hold)
                        if name == "seq+hold":
                            ms.append(1000 * (time.perf_counter() - start) / len(frames))
                        runs[name].append(flicker(frames, shown(quantized)))
                        if name in errors:
                            errors[name].append(error(frames, quantized))
            ratio_hold = [i / s for i, s in zip(runs["indep"], runs["seq+hold"])]
            ratio = [i / s for i, s in zip(runs["indep"], runs["seq"])]
            print(f"{k:>3} {distance:<9}" + "".join(f"{spread(runs[name]):>19}" for name in VARIANTS)
                  + f"{spread(ratio_hold, 1):>20}{spread(ratio, 1):>18}"
                  + f"{spread(errors['seq+hold']):>20}{spread(errors['indep']):>18}{statistics.median(ms):>10.1f}",
                  flush=True)


def part_time(loaded):
    print(f"\n2. Quantizing a {SECONDS:g} s clip at {WIDTH} px to 16 colours (Euclidean, sequential, hold),"
          " median of 3 runs")
    for name, _, frames in loaded:
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            quantize_clip(frames, 16)
            seconds.append(time.perf_counter() - start)
        verdict = "meets" if statistics.median(seconds) < AIM_SECONDS else "misses"
        print(f"   {name:<40} {len(frames):>3} frames {frames.shape[2]}x{frames.shape[1]}  "
              f"{statistics.median(seconds):.2f} s ({verdict} the {AIM_SECONDS:g} s aim)", flush=True)


def part_size(loaded, out):
    print("\n3. GIF bytes at 16 colours: ours (sequential, hold, Euclidean) against Pillow's quantize per frame")
    print(f"   {'clip':<40}{'ours KiB':>10}{'flicker':>9}{'Pillow KiB':>12}{'flicker':>9}{'size':>8}")
    for name, times, frames in loaded:
        ours = quantize_clip(frames, 16)
        write_gif(out / "ours.gif", ours, times)
        reference = pillow_gif(out / "pillow.gif", frames, times, 16)
        sizes = [(out / f).stat().st_size for f in ("ours.gif", "pillow.gif")]
        print(f"   {name:<40}{sizes[0] / 1024:>10.0f}{flicker(frames, shown(ours)):>9.2f}"
              f"{sizes[1] / 1024:>12.0f}{flicker(frames, shown(reference)):>9.2f}{sizes[0] / sizes[1]:>8.0%}",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="a folder of mp4 videos (the sample media)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    loaded = list(clips(args.folder, args.fps))
    if not loaded:
        sys.exit(f"no mp4 in {args.folder} decodes")
    print(f"{len(loaded)} clips of {SECONDS:g} s at {args.fps:g} fps, {WIDTH} px wide: "
          + ", ".join(f"{name} ({len(frames)} frames)" for name, _, frames in loaded))
    other = OtherLoad()
    part_flicker(loaded, args.seeds)
    part_time(loaded)
    with tempfile.TemporaryDirectory() as out:
        part_size(loaded, Path(out))
    print(f"\nOther processes used {other.cores():.1f} cores on average during the run.")


if __name__ == "__main__":
    main()
