"""Benchmark of posters: the article's 11x18 preview poster and a 20,000-pixel print poster.

In a temporary DATA_DIR with its own SQLite database, one child process:
1. makes `--videos` videos of `--seconds` s at 1280x720, 30 fps (ffmpeg's lavfi test
   sources, H.264 with a key frame every 250 frames, as cameras often write), ingests them
   with the real sampling code (1 frame in 20), gives each frame a random place on the map
   (the layout's quality does not matter here), and publishes the map as the layout stage does;
2. renders, through the worker's own poster stage (`workers.stages.render.render_poster`: assignment,
   reading, rendering, PNG encoding):
   - the article's poster: 11x18 cells of 534x300 from the frame store, 5874x5400 pixels;
   - a print-quality poster 20,000 pixels wide (width_mm and 300 dpi), 18x32 cells of
     about 1111x624 pixels, each frame decoded from its source video at its timestamp;
   and, in the same run, reads the same frames alone: from the frame store for the first,
   decoded from the videos with `full_resolution_frames` for the second.
For each it prints the wall time, the peak RSS (VmHWM, reset before each step; it
includes the pages of memory-mapped files the step touched, which the kernel can drop)
and the peak heap (RssAnon, anonymous memory, sampled every 20 ms).

Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/bench_posters.py [--videos 20] [--seconds 60]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.procmem import peak_mib, reset_peak, status_mib  # noqa: E402
SOURCES = ["testsrc2", "mandelbrot", "smptehdbars", "rgbtestsrc", "life", "cellauto", "gradients", "sierpinski"]








def measure(step):
    """Seconds, peak RSS and peak heap (RssAnon, sampled every 20 ms) of a step, and its result."""
    import threading

    peak_heap, done = [status_mib("RssAnon")], threading.Event()

    def sample():
        while not done.wait(0.02):
            peak_heap[0] = max(peak_heap[0], status_mib("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    reset_peak()
    sampler.start()
    start = time.perf_counter()
    result = step()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    return elapsed, peak_mib(), max(peak_heap[0], status_mib("RssAnon")), result


def make_collection(folder, n_videos, seconds):
    import numpy as np
    from django.utils import timezone

    from explorer.models import Collection, Source
    from workers.pipeline.arrays import ArrayWriter, open_array
    from workers.pipeline.map_versions import map_version, publish_map
    from workers.pipeline.sampling import SamplingParams, sample_source

    collection = Collection.objects.create(name="posters", sampling=SamplingParams().as_dict())
    folder.mkdir(parents=True)
    for i in range(n_videos):
        path = folder / f"video-{i}.mp4"
        source = SOURCES[i % len(SOURCES)]
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"{source}=size=1280x720:rate=30",
                        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "250",
                        "-pix_fmt", "yuv420p", str(path)], check=True)
        row = Source.objects.create(collection=collection, path=str(path), checksum=f"{i:064x}",
                                    size=path.stat().st_size, mtime=path.stat().st_mtime, kind="video",
                                    status="ready", heartbeat=timezone.now())
        result = sample_source(path, row.frames_dir, SamplingParams(), row.checksum)
        Source.objects.filter(pk=row.pk).update(frame_count=result.frames)
    rng = np.random.default_rng(0)
    index_dtype = [("source", "<i8"), ("frame", "<i8"), ("time", "<f8")]
    out = collection.embedding_dir
    with ArrayWriter(out, "index", (), index_dtype, {"stage": "bench"}) as index, \
            ArrayWriter(out, "pca", (8,), np.float32, {"stage": "bench"}) as pca, \
            ArrayWriter(out, "layout", (2,), np.float32, {"stage": "bench"}) as layout:
        for source in collection.sources.order_by("pk"):
            frames = open_array(source.frames_dir, "index")
            index.append(np.array([(source.pk, f, t) for f, t in zip(frames["frame"], frames["time"])],
                                  dtype=index_dtype))
            pca.append(rng.normal(0, 1, (len(frames), 8)))
            radius, angle = np.sqrt(rng.uniform(0, 1, len(frames))), rng.uniform(0, 2 * np.pi, len(frames))
            layout.append(np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1))
    version = map_version({"bench": "posters"})
    publish_map(out, collection.maps_dir, version)
    collection.embedding = {"map": version}
    collection.save()
    return collection


def render(collection, params):
    """Through the worker's poster stage, in this process."""
    from explorer.jobs import start_poster
    from explorer.models import Job
    from workers.stages.render import render_poster

    poster = start_poster(collection, params)
    render_poster(Job.objects.select_related("collection").get(pk=poster.job_id))
    poster.refresh_from_db()
    return poster


def read_alone(poster, quality):
    """The same frames read without rendering: the frame store, or decoding the sources."""
    from explorer.served_maps import snapshot
    from explorer.models import Source
    from workers.pipeline.posters import PosterSpec, assign_frames
    from workers.pipeline.sampling import full_resolution_frames

    current = snapshot(poster.collection)
    rows = [int(r) for r in assign_frames(PosterSpec.from_dict(poster.params), current.layout).reshape(-1) if r >= 0]

    def read():
        if quality == "preview":
            return sum(int(current.frame_pixels(row).sum() > 0) for row in rows)
        by_source = {}
        for row in rows:
            by_source.setdefault(int(current.index["source"][row]), []).append(float(current.index["time"][row]))
        paths = dict(Source.objects.values_list("pk", "path"))
        return sum(1 for source, times in by_source.items() for _ in full_resolution_frames(paths[source], times))
    return read, len(rows)


def child(n_videos, seconds):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    made = time.perf_counter()
    collection = make_collection(Path(os.environ["DATA_DIR"]) / "videos", n_videos, seconds)
    made = time.perf_counter() - made
    article = {"centre_x": 0.0, "centre_y": 0.0, "window_width": 1.6, "columns": 11, "rows": 18,
               "tile_width": 534, "tile_height": 300, "quality": "preview"}
    large = {"centre_x": 0.0, "centre_y": 0.0, "window_width": 1.6, "columns": 18, "rows": 32,
             "tile_width": 534, "tile_height": 300, "quality": "print", "width_mm": 20000 / 300 * 25.4, "dpi": 300}
    results = {"videos": n_videos, "seconds": seconds, "make_s": made}
    for name, params in (("article", article), ("print", large)):
        seconds_taken, peak, heap, poster = measure(lambda: render(collection, params))
        read, cells = read_alone(poster, params["quality"])
        read_s, read_peak, read_heap, count = measure(read)
        assert count == cells, (count, cells)
        results[name] = {"seconds": seconds_taken, "peak_mib": peak, "heap_mib": heap, "read_heap_mib": read_heap,
                         "width": poster.width, "height": poster.height,
                         "cells": poster.cells, "bytes": poster.file_size, "read_s": read_s,
                         "read_peak_mib": read_peak, "file": str(poster.file_path)}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.videos, args.seconds)))
        return
    (ROOT / "bench-out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-posters-", dir=ROOT / "bench-out") as data:
        env = dict(os.environ, DATA_DIR=data, LOG_LEVEL="WARNING")
        for name in ("DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        out = subprocess.run([sys.executable, __file__, "--child", "--videos", str(args.videos),
                              "--seconds", str(args.seconds)], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
    print(f"{r['videos']} videos of {r['seconds']} s at 1280x720 made, sampled and mapped in {r['make_s']:.0f} s\n")
    print("| poster | pixels | cells | render (s) | peak RSS / heap (MiB) | reading the same frames alone (s) "
          "| its peak RSS / heap (MiB) | render / read |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, label in (("article", "11x18 preview (frame store)"), ("print", "18x32 print (source videos)")):
        p = r[name]
        print(f"| {label} | {p['width']}x{p['height']} | {p['cells']} | {p['seconds']:.1f} | "
              f"{p['peak_mib']:.0f} / {p['heap_mib']:.0f} | {p['read_s']:.2f} | "
              f"{p['read_peak_mib']:.0f} / {p['read_heap_mib']:.0f} | {p['seconds'] / p['read_s']:.1f} |")
    print(f"\nfiles: {r['article']['bytes'] / 1e6:.1f} MB and {r['print']['bytes'] / 1e6:.1f} MB (PNG), removed with the temporary DATA_DIR")


if __name__ == "__main__":
    main()
