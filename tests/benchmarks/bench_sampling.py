"""Benchmark of stage 1 (sample): PyAV frame sampling against the ffmpeg CLI.

What it measures, in one run:

1. Throughput. For each test video, the wall time of
     ffmpeg -i FILE -an -vf "select='not(mod(n\\,20))',scale=534:300" -fps_mode passthrough -f null -
   (decode everything, keep 1 frame in 20, scale it; nothing written) against
   `workers.pipeline.sampling.sample_source` with the default SamplingParams
   (534x300, every=20), which also converts the kept frames to RGB and writes
   them to a frame store on disk. The two run alternately, `--repeat` times each;
   the median wall time is reported, with the decoding rate (all decoded frames,
   as counted by ffprobe, per second) and the pipeline's rate as a percentage of
   ffmpeg's (the aim is >= 90 %). Both use their default threading (ffmpeg's
   automatic threads; PyAV's thread_type AUTO as set by the pipeline).
   `-an` keeps ffmpeg from decoding audio, which the pipeline never touches.

2. Peak memory. `sample_source` runs on the short and on the ten-times-longer
   video in a fresh Python process each; its peak RSS is compared with a process
   that only imports the same modules. Sampling streams frames to disk, so the
   peak should not grow with the video's length (long/short ratio near 1.0).
   The child reports VmHWM from /proc/self/status rather than ru_maxrss:
   Linux carries ru_maxrss over fork+exec, so a child's ru_maxrss (from
   getrusage or os.wait4) is never below this benchmark's own RSS at spawn time,
   whereas VmHWM belongs to the new process image alone.

Test videos are made with ffmpeg's lavfi `testsrc2` (768x432, 30 fps, H.264
yuv420p, libx264 preset veryfast): 60 s and 600 s. They are generated once into
the output folder and reused. The real video
../shared/media/intel-sample-videos/car-detection.mp4 (relative to the repo
root) is added to the throughput table when it exists.

Run from the repository root (this is not a pytest test):

    .venv/bin/python tests/benchmarks/bench_sampling.py [--out DIR] [--repeat 5]
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from workers.pipeline.sampling import SamplingParams, sample_source  # noqa: E402

PARAMS = SamplingParams()  # the pipeline's defaults: 534x300, one frame in 20
REAL_VIDEO = REPO.parent / "shared" / "media" / "intel-sample-videos" / "car-detection.mp4"
SYNTHETIC = {"short": 60, "long": 600}  # name: seconds of testsrc2
MIB = 1024 * 1024

# Runs in a fresh interpreter: sample one video (or, with no arguments, only import
# what sampling imports) and print frames kept and peak RSS (VmHWM, KiB) as JSON.
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import av, numpy
from workers.pipeline.sampling import SamplingParams, sample_source
frames = 0
if len(sys.argv) > 2:
    frames = sample_source(sys.argv[2], sys.argv[3], SamplingParams(), checksum="bench").frames
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"frames": frames, "vmhwm_kib": hwm}))
"""


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def make_video(path, seconds):
    """A testsrc2 clip, generated once: reused when the file is already there."""
    if path.exists():
        return
    print(f"generating {path.name} ({seconds} s)...", flush=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")  # renamed when complete
    run([
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=768x432:rate=30:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(tmp),
    ])
    tmp.replace(path)


def count_frames(path):
    """Frames in the first video stream (H.264: one packet per frame), without decoding."""
    out = run([
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
        "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path),
    ])
    return int(out.strip().rstrip(","))


def time_ffmpeg(path):
    vf = f"select='not(mod(n\\,{PARAMS.every}))',scale={PARAMS.width}:{PARAMS.height}"
    start = time.perf_counter()
    run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-an",
         "-vf", vf, "-fps_mode", "passthrough", "-f", "null", "-"])
    return time.perf_counter() - start


def time_pipeline(path, scratch):
    out_dir = Path(tempfile.mkdtemp(prefix="sample-", dir=scratch))  # new each time: no reuse
    try:
        start = time.perf_counter()
        result = sample_source(path, out_dir, PARAMS, checksum="bench")
        return time.perf_counter() - start, result.frames
    finally:
        shutil.rmtree(out_dir)


def throughput(name, path, repeat, scratch):
    decoded = count_frames(path)
    ffmpeg_times, pipeline_times, kept = [], [], None
    for i in range(repeat):
        ffmpeg_times.append(time_ffmpeg(path))
        seconds, kept = time_pipeline(path, scratch)
        pipeline_times.append(seconds)
        print(f"  {name:26} run {i + 1}/{repeat}: ffmpeg {ffmpeg_times[-1]:7.3f} s   "
              f"pipeline {pipeline_times[-1]:7.3f} s", flush=True)
    ffmpeg_s, pipeline_s = statistics.median(ffmpeg_times), statistics.median(pipeline_times)
    return {
        "name": name, "decoded": decoded, "kept": kept,
        "ffmpeg_s": ffmpeg_s, "pipeline_s": pipeline_s,
        "ffmpeg_fps": decoded / ffmpeg_s, "pipeline_fps": decoded / pipeline_s,
        "ratio": ffmpeg_s / pipeline_s,  # = pipeline rate / ffmpeg rate
    }


def peak_memory(path, scratch):
    """Peak RSS in MiB of a fresh process sampling `path` (None: imports only), frames kept, store bytes."""
    out_dir = Path(tempfile.mkdtemp(prefix="sample-", dir=scratch))
    args = [str(path), str(out_dir)] if path else []
    try:
        child = json.loads(run([sys.executable, "-c", CHILD, str(REPO), *args]))
        store = out_dir / "frames.bin"
        return {
            "peak_mib": child["vmhwm_kib"] * 1024 / MIB,
            "kept": child["frames"],
            "store_bytes": store.stat().st_size if store.exists() else 0,
        }
    finally:
        shutil.rmtree(out_dir)


def print_tables(rates, memory):
    print()
    print(f"Throughput (median of the runs; rate = decoded frames / wall time; "
          f"scale to fit {PARAMS.width}x{PARAMS.height}, 1 in {PARAMS.every})")
    print(f"{'video':<26}{'decoded':>8}{'kept':>6}{'ffmpeg s':>10}{'pipeline s':>12}"
          f"{'ffmpeg fps':>12}{'pipeline fps':>14}{'pipe/ffmpeg':>13}")
    for r in rates:
        verdict = "ok" if r["ratio"] >= 0.9 else "LOW"
        print(f"{r['name']:<26}{r['decoded']:>8}{r['kept']:>6}"
              f"{r['ffmpeg_s']:>10.3f}{r['pipeline_s']:>12.3f}{r['ffmpeg_fps']:>12.0f}"
              f"{r['pipeline_fps']:>14.0f}{r['ratio']:>9.1%} {verdict:>3}")
    print()
    print("Peak memory of sample_source in a fresh process (VmHWM)")
    print(f"{'run':<26}{'peak RSS MiB':>13}{'over imports':>14}{'kept':>6}{'store MiB':>11}")
    base = memory["imports only"]["peak_mib"]
    for name, m in memory.items():
        print(f"{name:<26}{m['peak_mib']:>13.1f}{m['peak_mib'] - base:>14.1f}{m['kept']:>6}"
              f"{m['store_bytes'] / MIB:>11.1f}")
    short, long = (m["peak_mib"] for m in list(memory.values())[1:3])
    print(f"long/short peak RSS ratio: {long / short:.3f}   "
          f"(over imports: {(long - base) / max(short - base, 1e-9):.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-out",
                        help="folder for the test videos and scratch output (default: bench-out/)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each tool per video")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    began = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    videos = []
    for name, seconds in SYNTHETIC.items():
        path = args.out / f"testsrc2-768x432-30fps-{seconds}s.mp4"
        make_video(path, seconds)
        videos.append((f"{name} ({seconds} s testsrc2)", path))
    if REAL_VIDEO.exists():
        videos.append((f"real ({REAL_VIDEO.name})", REAL_VIDEO))
    else:
        print(f"(no {REAL_VIDEO}: real-video row skipped)")

    with tempfile.TemporaryDirectory(prefix="scratch-", dir=args.out) as scratch:
        print(f"throughput, {args.repeat} interleaved run(s) each:", flush=True)
        rates = [throughput(name, path, args.repeat, scratch) for name, path in videos]
        print("peak memory, one fresh process each:", flush=True)
        memory = {"imports only": peak_memory(None, scratch)}
        for name, path in videos[:2]:  # the short and the long testsrc2
            memory[name] = peak_memory(path, scratch)

    print_tables(rates, memory)
    print(f"\ntotal time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
