"""Benchmark of serving the map: tiles, hover, similar clips, at 100k and 1M frames.

For each size (`--sizes`, default 100,000 and 1,000,000 frames), in a fresh child process:

1. A synthetic collection is made in a temporary DATA_DIR with its own SQLite database:
   sources of 500 frames each (200 sources at 100k, 2,000 at 1M), whose frame stores are
   all the same 500 real 534x300 frames (ffmpeg's testsrc2 and mandelbrot, linked, since
   a million distinct frames would be 480 GB); 256-d vectors that walk smoothly through
   shared clusters, as a video's frames do; a 2D layout that keeps those clusters, in the
   unit disk. Then `publish_map` builds the map exactly as the layout stage does (cell
   index of every grid level, faiss index, dissimilar clips) and is timed.
2. Requests go through Django's test client to the real views (URL routing, the
   database lookups, rendering, JSON), without a network in between:
   - tiles, cold: `--tiles` tiles never rendered before, at random zoom levels, each
     one the tile holding a random frame (so tiles are where the frames are);
   - tiles, cached: the same tiles again, now read from the map's tile cache;
   - tiles @2x, cold: the same tiles at twice the pixels (high-DPI screens), rendered;
   - hover: the frame under a random frame's place, at a random zoom;
   - similar clips: `--queries` random frames, each the top 10 clips of 6 s
     (the first query, which loads the faiss index, is reported apart).
   Each figure is the median and 95th percentile in milliseconds.

Memory: the peak RSS while publishing, and the web process's heap (RssAnon) and mapped
file pages (RssFile) after serving everything. Mapped pages can be dropped by the kernel
at any time; here they also count the one shared frame store once per source that maps it.

Caveat: the 500 shared frames stay in the OS page cache, so "cold" means a tile not yet
rendered, not a frame store on a cold disk; reading 16 frames from a cold disk adds
about 16 random reads.

Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/bench_map.py [--sizes 100000,1000000] [--tiles 300] [--queries 200]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.procmem import peak_mib, reset_peak, status_mib  # noqa: E402
FRAMES_PER_SOURCE = 500


def percentiles(values):
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]








def make_frames(folder):
    """500 real frames of 534x300 from ffmpeg's test sources, as a frame store."""
    import numpy as np

    from workers.pipeline.arrays import ArrayWriter

    raw = b""
    for source in ("testsrc2", "mandelbrot"):
        raw += subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"{source}=size=534x300:rate=25", "-frames:v",
             str(FRAMES_PER_SOURCE // 2), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 300, 534, 3)
    with ArrayWriter(folder, "frames", (300, 534, 3), np.uint8, {"stage": "bench"}) as out:
        out.append(frames)


def make_collection(n_frames, seed=0):
    """Collection and Source rows, frame stores, and the embedding arrays."""
    import numpy as np
    from django.conf import settings

    from explorer.models import Collection, Source
    from workers.pipeline.arrays import ArrayWriter

    rng = np.random.default_rng(seed)
    collection = Collection.objects.create(name=f"bench-{n_frames}")
    n_sources = n_frames // FRAMES_PER_SOURCE
    Source.objects.bulk_create([Source(collection=collection, path=f"/nowhere/video-{i}.mp4", checksum=f"{i:064x}",
                                       size=1, mtime=0, kind="video", status="ready",
                                       frame_count=FRAMES_PER_SOURCE) for i in range(n_sources)])
    ids = list(collection.sources.order_by("pk").values_list("pk", flat=True))
    shared = Path(settings.DATA_DIR) / "shared-frames"
    make_frames(shared)
    for pk in ids:
        folder = collection.sources_dir / str(pk)
        folder.mkdir(parents=True)
        os.symlink(shared / "frames.bin", folder / "frames.bin")
        os.symlink(shared / "frames.json", folder / "frames.json")

    centres = rng.normal(0, 4, (64, 256)).astype(np.float32)
    places = rng.uniform(-0.7, 0.7, (64, 2))
    index_dtype = [("source", "<i8"), ("frame", "<i8"), ("time", "<f8")]
    out = collection.embedding_dir
    with ArrayWriter(out, "index", (), index_dtype, {"stage": "bench"}) as index, \
            ArrayWriter(out, "pca", (256,), np.float32, {"stage": "bench"}) as pca, \
            ArrayWriter(out, "layout", (2,), np.float32, {"stage": "bench"}) as layout:
        for pk in ids:
            scenes = rng.integers(0, 64, FRAMES_PER_SOURCE // 50).repeat(50)  # a scene every 50 frames
            walk = np.cumsum(rng.normal(0, 0.15, (FRAMES_PER_SOURCE, 256)), axis=0).astype(np.float32)
            pca.append(centres[scenes] + walk)
            xy = places[scenes] + np.cumsum(rng.normal(0, 0.004, (FRAMES_PER_SOURCE, 2)), axis=0)
            layout.append(np.clip(xy + rng.normal(0, 0.08, (FRAMES_PER_SOURCE, 2)), -1, 1))
            frames = np.arange(FRAMES_PER_SOURCE)
            index.append(np.array(list(zip([pk] * FRAMES_PER_SOURCE, frames * 20, frames * 20 / 30.0)),
                                  dtype=index_dtype))
    return collection


def setup_django():
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")
    django.setup()


def child_make(n_frames):
    """Make the collection and publish its map, in a process of its own."""
    setup_django()
    from django.core.management import call_command

    from workers.pipeline.map_versions import map_version, publish_map

    call_command("migrate", verbosity=0)
    made = time.perf_counter()
    collection = make_collection(n_frames)
    made = time.perf_counter() - made
    version = map_version({"bench": n_frames}, clip_seconds=6.0, dissimilar=8)
    reset_peak()
    published = time.perf_counter()
    publish_map(collection.embedding_dir, collection.maps_dir, version)
    published = time.perf_counter() - published
    collection.embedding = {"map": version, "frames": n_frames}
    collection.save()
    return {"collection": collection.pk, "make_s": made, "publish_s": published, "publish_peak_mib": peak_mib()}


def child_serve(collection_id, n_frames, n_tiles, n_queries):
    """Serve requests in a fresh process, as a web worker would."""
    setup_django()
    import numpy as np
    from django.test import Client

    from explorer.models import Collection
    from workers.pipeline.tiles import TileGrid

    collection = Collection.objects.get(pk=collection_id)
    client = Client()
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get_or_create(username="bench")[0])  # a viewer: every page reads
    state = client.get(f"/api/collections/{collection.pk}/map/").json()
    grid = TileGrid(state["max_zoom"] - 2)
    rng = np.random.default_rng(1)
    from explorer.served_maps import snapshot

    current = snapshot(collection)
    rows = rng.integers(0, n_frames, n_tiles)
    tiles = []
    for row in rows:
        zoom = int(rng.integers(0, grid.max_zoom + 1))
        x, y = current.layout[row]
        column = min((1 << zoom) - 1, int((x + 1) / 2 * (1 << zoom)))
        tile_row = min((1 << zoom) - 1, int((1 - y) / 2 * (1 << zoom)))
        tiles.append((zoom, column, tile_row))
    tiles = list(dict.fromkeys(tiles))

    def timed(url):
        start = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200 and body, (url, response.status_code)
        return elapsed

    tile_urls = [state["tile_url"].format(z=z, x=x, y=y, r="") for z, x, y in tiles]
    cold = [timed(url) for url in tile_urls]
    cached = [timed(url) for url in tile_urls]
    cold_2x = [timed(state["tile_url"].format(z=z, x=x, y=y, r="@2x")) for z, x, y in tiles]
    hover = []
    for row in rng.integers(0, n_frames, 300):
        x, y = current.layout[row]
        response_ms = timed(f"/api/collections/{collection.pk}/map/point/?x={x}&y={y}"
                            f"&zoom={int(rng.integers(0, grid.max_zoom + 1))}")
        hover.append(response_ms)
    similar = []
    for row in rng.integers(0, n_frames, n_queries + 1):
        entry = current.index[row]
        similar.append(timed(f"/api/collections/{collection.pk}/map/similar/?source={entry['source']}"
                             f"&frame={entry['frame']}"))
    return {"frames": n_frames, "max_zoom": state["max_zoom"],
            "tiles": len(tile_urls), "cold": percentiles(cold), "cached": percentiles(cached),
            "cold_2x": percentiles(cold_2x),
            "hover": percentiles(hover), "similar_first": similar[0], "similar": percentiles(similar[1:]),
            "queries": len(similar) - 1, "peak_mib": peak_mib(), "anon_mib": status_mib("RssAnon"),
            "file_mib": status_mib("RssFile")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--tiles", type=int, default=300)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--make", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        print(json.dumps(child_make(args.make)))
        return
    if args.serve:
        print(json.dumps(child_serve(*args.serve, args.tiles, args.queries)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-map-", dir=ROOT / "bench-out") as data:
            env = dict(os.environ, DATA_DIR=data, LOG_LEVEL="WARNING", DJANGO_ALLOWED_HOSTS="testserver")
            env.pop("DATABASE_URL", None)
            env.pop("REDIS_URL", None)

            def run(*flags):
                out = subprocess.run([sys.executable, __file__, *map(str, flags), "--tiles", str(args.tiles),
                                      "--queries", str(args.queries)], cwd=ROOT, env=env, check=True,
                                     capture_output=True, text=True).stdout
                return json.loads(out.strip().splitlines()[-1])

            made = run("--make", size)
            results.append({**made, **run("--serve", made["collection"], size)})
            print(f"{size} frames done", file=sys.stderr)
    print("| | " + " | ".join(f"{r['frames']:,} frames" for r in results) + " |")
    print("| --- |" + " --- |" * len(results))
    print("| build the synthetic collection (s) | " + " | ".join(f"{r['make_s']:.1f}" for r in results) + " |")
    print("| publish the map: cells, faiss, dissimilar (s) | "
          + " | ".join(f"{r['publish_s']:.1f}" for r in results) + " |")
    print("| zoom levels | " + " | ".join(f"0-{r['max_zoom']}" for r in results) + " |")
    for key, label in (("cold", "tile, cold: rendered (ms)"), ("cached", "tile, cached (ms)"),
                       ("cold_2x", "tile @2x (high-DPI), cold (ms)"),
                       ("hover", "frame under a point (ms)"), ("similar", "similar clips, top 10 (ms)")):
        print(f"| {label}, median / p95 | "
              + " | ".join(f"{r[key][0]:.1f} / {r[key][1]:.1f}" for r in results) + " |")
    print("| similar clips, first query incl. index load (ms) | "
          + " | ".join(f"{r['similar_first']:.0f}" for r in results) + " |")
    print("| peak RSS while publishing (MiB) | " + " | ".join(f"{r['publish_peak_mib']:.0f}" for r in results) + " |")
    print("| web process after serving all the above: heap (RssAnon), MiB | "
          + " | ".join(f"{r['anon_mib']:.0f}" for r in results) + " |")
    print("| same: mapped file pages (RssFile; frame store counted once per source), MiB | "
          + " | ".join(f"{r['file_mib']:.0f}" for r in results) + " |")
    print(f"({results[0]['tiles']} distinct tiles, {results[0]['queries']} similar-clip queries per size)")


if __name__ == "__main__":
    main()
