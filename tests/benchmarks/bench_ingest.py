"""Benchmark of ingest end to end: `manage.py ingest` on a folder of photos and on a folder of
videos, each stage's time and frames per second, next to what its own parts do alone on the
same files, in one run:

- decoding alone: Pillow opening, orienting and letterboxing each photo (what sampling does
  to a photo but write it), PyAV decoding every frame of each video (sampling decodes them
  all, and keeps one in SAMPLE_EVERY);
- the bare model: Keras float32 Xception (the product's own network, with its crop thread)
  describing the frames the ingest sampled, both squares of each, in this one process.

Each ingest runs in a fresh data folder on the embedded defaults (SQLite, the filesystem
broker, `--workers N` local worker processes), as `make explore` runs it. Stage times come
from watching the job's row in the database every 0.1 s. Pass `--precision` several times
(auto, float32, ...) to run each folder once per feature precision, side by side.

Run from the repository root (this is not a pytest test); figures mean something only on an
otherwise idle machine (the 1-minute load average is printed before each part):

    .venv/bin/python tests/benchmarks/bench_ingest.py [--photos DIR] [--videos DIR]
        [--weights PATH] [--workers 2] [--every 20] [--precision auto --precision float32]
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = REPO.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
DEFAULT_VIDEOS = SHARED / "media" / "intel-sample-videos"
STAGES = ("scan", "sample", "features", "pca", "train", "layout", "cluster")


def load():
    return f"load {os.getloadavg()[0]:.2f}"


def ingest(folder, data_dir, env, workers, every):
    """Run `manage.py ingest` on `folder`; returns ({stage: seconds}, total seconds, files, frames)."""
    env = {**env, "DATA_DIR": str(data_dir)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", str(folder), "--collection", "bench", "--workers", str(workers),
         "--every", str(every)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    database = sqlite3.connect(data_dir / "explorer.sqlite3", timeout=30)
    seen, stage_started, current = {}, started, None
    while process.poll() is None:
        row = database.execute("SELECT stage FROM explorer_job ORDER BY id DESC LIMIT 1").fetchone()
        if row and row[0] != current:
            now = time.monotonic()
            if current is not None:
                seen[current] = now - stage_started
            current, stage_started = row[0], now
        time.sleep(0.1)
    total = time.monotonic() - started
    output = process.stdout.read()
    if process.returncode not in (0, 1):
        raise SystemExit(f"ingest of {folder} failed:\n{output}")
    files, frames = database.execute(
        "SELECT count(*), coalesce(sum(frame_count), 0) FROM explorer_source WHERE status = 'ready'").fetchone()
    database.close()
    return seen, total, files, frames


def frame_stores(data_dir):
    """The sampled frames of the ingest in `data_dir`, as one array-like (read in batches), in
    the frame stores' layout (DATA_DIR/collections/ID/sources/ID, explorer/models/collection.py)."""
    from workers.pipeline.arrays import RowsOf, open_array

    database = sqlite3.connect(data_dir / "explorer.sqlite3")
    rows = database.execute("SELECT collection_id, id FROM explorer_source WHERE status = 'ready' "
                            "AND frame_count > 0 ORDER BY id").fetchall()
    database.close()
    return RowsOf([open_array(data_dir / "collections" / str(collection) / "sources" / str(source), "frames")
                   for collection, source in rows])


def decode_photos(folder):
    """Seconds to open, orient and letterbox every photo under `folder`, and how many."""
    from workers.pipeline.files import find_media
    from workers.pipeline.images import letterbox_photo
    from workers.pipeline.sampling import MediaError, SamplingParams, read_photo

    params = SamplingParams()
    files = [path for path in find_media([str(folder)])[0] if path.suffix.lower() not in (".gif",)]
    started, count = time.perf_counter(), 0
    for path in files:
        try:
            letterbox_photo(read_photo(path, 89_478_485), params.width, params.height)
            count += 1
        except MediaError:
            pass  # a video, or a broken file: sampling would not decode it as a photo either
    return time.perf_counter() - started, count


def decode_videos(folder):
    """Seconds to decode every frame of every video under `folder` with PyAV, and how many frames."""
    import av

    from workers.pipeline.files import find_media, media_kind

    started, frames = time.perf_counter(), 0
    for path in find_media([str(folder)])[0]:
        if media_kind(path) != "video":
            continue
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                frames += sum(1 for _ in container.decode(stream))
        except (av.FFmpegError, IndexError):
            pass
    return time.perf_counter() - started, frames


def bare_model(frames, weights):
    """Seconds for Keras float32 Xception to describe `frames` (both squares each)."""
    from workers.pipeline.features import XceptionFeatures

    extractor = XceptionFeatures(str(weights), batch_size=8, precision="float32")
    extractor.transform(frames[0:8])  # build and warm the network: not part of the figure
    started = time.perf_counter()
    extractor.transform(frames)
    return time.perf_counter() - started


def report(name, runs, decode, bare):
    decode_seconds, decoded = decode
    print(f"\n## {name}")
    print(f"decoding alone: {decoded} {'photos' if name == 'photos' else 'frames'} in {decode_seconds:.1f} s "
          f"({decoded / decode_seconds:.1f}/s)")
    for precision, (stages, total, files, frames) in runs.items():
        print(f"\n### ingest, FEATURE_PRECISION={precision}: {files} file(s), {frames} frame(s), {total:.1f} s "
              f"end to end = {total / bare:.2f} x the bare model's features")
        print("| stage | seconds | files or frames per second | vs alone |")
        print("| --- | --- | --- | --- |")
        for stage in STAGES:
            if stage not in stages:
                continue
            seconds = stages[stage]
            if stage == "sample":
                rate = f"{files / seconds:.1f} files/s"
                versus = (f"decoding alone {decode_seconds / seconds:.2f} x as long"
                          if name == "photos" else f"decoding alone took {decode_seconds:.1f} s")
            else:
                rate, versus = f"{frames / seconds:.1f} frames/s", ""
            if stage == "features":
                versus = f"{bare / seconds:.2f} x the bare model's speed"
            print(f"| {stage} | {seconds:.1f} | {rate} | {versus} |")
    frames = next(iter(runs.values()))[3]
    print(f"\nbare Keras float32 model, one process: {frames} frame(s) ({2 * frames} crops) in {bare:.1f} s "
          f"({2 * frames / bare:.1f} crops/s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, help="a folder of photos (none: that part is left out)")
    parser.add_argument("--videos", type=lambda text: Path(text) if text else None,
                        default=DEFAULT_VIDEOS if DEFAULT_VIDEOS.exists() else None,
                        help="a folder of videos (default: the shared sample videos; '' leaves the part out)")
    parser.add_argument("--weights", type=Path, default=Path(os.environ.get("XCEPTION_WEIGHTS", DEFAULT_WEIGHTS)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=int, default=20, help="keep one video frame in N (as `make explore`)")
    parser.add_argument("--precision", action="append", help="FEATURE_PRECISION for a run (default: auto)")
    args = parser.parse_args()
    if not args.weights.exists():
        raise SystemExit(f"no Xception weights at {args.weights}: pass --weights")
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    env = {**os.environ, "XCEPTION_WEIGHTS": str(args.weights)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)  # the embedded broker, as `make explore` has it
    try:
        for name, folder, decoder in (("photos", args.photos, decode_photos), ("videos", args.videos, decode_videos)):
            if folder is None:
                continue
            print(f"\n[{name}: {folder}; {load()}]", flush=True)
            runs = {}
            for number, precision in enumerate(args.precision or ["auto"]):
                data_dir = scratch / f"{name}-{number}"
                runs[precision] = ingest(folder, data_dir, {**env, "FEATURE_PRECISION": precision},
                                         args.workers, args.every)
            print(f"[decoding alone; {load()}]", flush=True)
            decode = decoder(folder)
            print(f"[bare model; {load()}]", flush=True)
            bare = bare_model(frame_stores(scratch / f"{name}-0"), args.weights)
            report(name, runs, decode, bare)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
