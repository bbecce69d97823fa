"""Benchmark of the tagger (workers/pipeline/tagger.py) and the predict API.

1. Accuracy with few labels, on a collection ingested with the real Xception weights
   (`--data-dir` and `--collection`; skipped without them). Each frame's class is its
   video, or its scene (tests/benchmarks/bench_clusters.py scene_of: all of asl_gestures/
   one scene, head-pose-*.gif one, face-demographics-*.gif one, a GIF excerpt of a video the
   scene of that video). For each of 5 seeds, `--labels` frames of each class (5 and 20)
   are drawn at random as the labelled frames, the head is trained on their 4096-d
   features exactly as the tag stage trains it (`fit_head`), and every other frame is
   tagged: accuracy on those, the median and [min-max] over the seeds, for the softmax and
   the dense head, with the training time.

2. Predict latency, end to end, for a 299x299 JPEG (a testsrc2 frame). A collection of
   three generated videos (three kinds, two videos each) is ingested into a temporary
   DATA_DIR, 3 frames of each video are labelled and a tagger trained; then the real web
   server (`manage.py runserver`, threaded, login-free on 127.0.0.1) and the predict worker
   (`manage.py predictor`) serve `POST /api/collections/ID/predict/`. Timed: `--requests`
   requests from 1 client, then from 4 concurrent clients (each its own connection),
   median and p95 in ms, after 3 warm-up requests (sent with http.client, one connection a
   request, as curl sends them). Beside them, the bare model on the same
   image in this process: Xception on its two crops (the network as the predict worker
   runs it, same weights and precision), median of `--requests` calls; and on 8 crops (4
   images at once). The weights are `--weights` (default "random": speed does not depend
   on their values; give the real file to check).

3. With `--fine-tune-seeds N`: the frozen head against the fine-tuned top blocks of Xception
   (workers/pipeline/fine_tune.py), scene as the class, `--fine-tune-labels` labelled frames
   per class, on the same videos held out as the tag stage holds them out, for N seeds.

Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/bench_tagger.py [--data-dir DIR --collection NAME] [--weights FILE]
"""
import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.procmem import OtherLoad  # noqa: E402

SEEDS = range(5)


# ---------------------------------------------------------------- 1. accuracy

def load_features(data_dir, name):
    """(features (n, 4096) float32, [("video", classes), ("scene", classes)], the source of
    each frame, (source, position in its frame store) of each, the sources' folder)."""
    import sqlite3
    from contextlib import closing
    from pathlib import PurePosixPath

    from tests.benchmarks.bench_clusters import scene_of
    from workers.pipeline.features import read_feature_chunks

    with closing(sqlite3.connect(f"file:{Path(data_dir) / 'explorer.sqlite3'}?mode=ro", uri=True)) as db:
        found = db.execute("SELECT id FROM explorer_collection WHERE name = ?", (name,)).fetchone()
        if found is None:
            sys.exit(f"no collection {name!r} in {data_dir}")
        sources = db.execute("SELECT id, path, frame_count FROM explorer_source WHERE collection_id = ? AND "
                             "status = 'ready' AND frame_count > 0 ORDER BY id", found).fetchall()
    features, videos, paths, places = [], [], {}, []
    for pk, path, frames in sources:
        chunks = read_feature_chunks(Path(data_dir) / "collections" / str(found[0]) / "sources" / str(pk), frames, {})
        if chunks is None:
            continue
        features += [np.asarray(chunk, dtype=np.float32) for chunk in chunks]
        videos += [pk] * frames
        paths[pk] = path
        places += [(pk, position) for position in range(frames)]
    video_by_stem = {PurePosixPath(p).stem: p for p in paths.values() if not p.lower().endswith(".gif")}
    scenes = [scene_of(paths[v], video_by_stem) for v in videos]
    return np.concatenate(features), [("video", np.unique(videos, return_inverse=True)[1].reshape(-1)),
                                      ("scene", np.unique(scenes, return_inverse=True)[1].reshape(-1))], \
        np.array(videos), places, Path(data_dir) / "collections" / str(found[0]) / "sources"


def accuracy(features, classes, labels_per_class, kind, seed):
    from workers.pipeline.tagger import fit_head

    rng = np.random.default_rng(seed)
    labelled = np.zeros(len(classes), bool)
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        labelled[rng.choice(members, min(labels_per_class, len(members) - 1), replace=False)] = True
    began = time.perf_counter()
    head = fit_head(features[labelled], classes[labelled], [str(c) for c in np.unique(classes)], kind, seed)
    seconds = time.perf_counter() - began
    return float(np.mean(head.probabilities(features[~labelled]).argmax(axis=1) == classes[~labelled])), seconds


def spread(values, digits=3):
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def part_accuracy(args):
    if not args.data_dir:
        print("1. accuracy: skipped (give --data-dir and --collection of a collection ingested with the real weights)")
        return
    features, definitions, _, _, _ = load_features(args.data_dir, args.collection)
    print(f"1. accuracy: {len(features)} frames of {args.collection!r}, tagging the frames not labelled; "
          f"median [min-max] over {len(SEEDS)} seeds")
    print(f"   {'classes':<16} {'labelled':>9}  {'softmax':<22} {'s':>5}  {'dense':<22} {'s':>5}")
    for name, classes in definitions:
        for per_class in args.labels:
            cells = []
            for kind in ("softmax", "dense"):
                runs = [accuracy(features, classes, per_class, kind, seed) for seed in SEEDS]
                cells.append((spread([a for a, _ in runs]), statistics.median(s for _, s in runs)))
            print(f"   {name} ({len(np.unique(classes))}){'':<{11 - len(name)}} {per_class:>5}/cls  "
                  + "  ".join(f"{acc:<22} {sec:>5.1f}" for acc, sec in cells))


def part_fine_tune(args):
    """Frozen head and fine-tuned top blocks on the same held-out videos, scene as the class."""
    import time as clock

    from workers.pipeline.arrays import open_array
    from workers.pipeline.fine_tune import fine_tune
    from workers.pipeline.tagger import evaluate, fit_head, split_by_video

    features, definitions, videos, places, sources = load_features(args.data_dir, args.collection)
    classes = dict(definitions)["scene"]
    stores = {pk: open_array(sources / str(pk), "frames") for pk in np.unique(videos)}
    print(f"3. fine-tuning ({args.weights}): scene as the class, {args.fine_tune_labels} labelled frames per class "
          "drawn at random, validated on held-out videos (the tag stage's split); accuracy on the held-out frames")
    print(f"   {'seed':>4}  {'held-out':>8}  {'frozen head':>11}  {'fine-tuned':>10}  {'s':>5}")
    for seed in range(args.fine_tune_seeds):
        rng = np.random.default_rng(seed)
        chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(classes == c), min(args.fine_tune_labels,
                                         int((classes == c).sum())), replace=False) for c in np.unique(classes)]))
        targets, names = classes[chosen], [str(c) for c in np.unique(classes)]
        held = split_by_video(targets, videos[chosen], seed=0)
        head = fit_head(features[chosen][~held], targets[~held], names, "softmax", 0)
        frozen = evaluate(head, features[chosen][held], targets[held])["accuracy"]
        frames = [stores[places[i][0]][places[i][1]] for i in chosen]
        began = clock.perf_counter()
        tuned = fine_tune(frames, targets, held, head, args.weights, seed=seed)["accuracy"]
        print(f"   {seed:>4}  {int(held.sum()):>8}  {frozen:>11.3f}  {tuned:>10.3f}  {clock.perf_counter() - began:>5.0f}")


# ---------------------------------------------------------------- 2. latency

def manage(env, *args, **kwargs):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, **kwargs)


def make_tagged_collection(env, scratch):
    from tests.media import make_video

    folder = scratch / "media"
    kinds = {"bars": ("smptebars", "smptehdbars"), "pattern": ("testsrc", "testsrc2"),
             "fractal": ("mandelbrot", "cellauto")}
    for kind, sources in kinds.items():
        for source in sources:
            make_video(folder / f"{kind}-{source}.mp4", seconds=4, source=source)
    manage(env, "ingest", str(folder), "--collection", "bench", "--every", "10", "--workers", "2")
    rows = ["source,timestamp,label"] + [f"{folder / f'{kind}-{source}.mp4'},{t},{kind}"
                                         for kind, sources in kinds.items() for source in sources for t in (0, 1, 2)]
    (scratch / "labels.csv").write_text("\n".join(rows) + "\n")
    manage(env, "labels", "bench", "--import", str(scratch / "labels.csv"))
    manage(env, "tag", "bench", "--workers", "1")
    # A viewer's token: what a program that asks for tags would hold.
    printed = manage(env, "adduser", "bench-client", "--no-password", "--token").stdout
    return next(line.split()[-1] for line in printed.splitlines() if line.startswith("API token:"))


def timed_requests(url, token, photo, count, clients):
    """ms of each of `count` requests from each of `clients` concurrent clients. The multipart
    body is made once and sent with http.client, one connection a request as curl does, so
    the figures are the server's and not a client library's."""
    import http.client
    from urllib.parse import urlsplit

    boundary = "bench-tagger-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    where = urlsplit(url)

    def one_client(_):
        times = []
        for _ in range(count):
            began = time.perf_counter()
            connection = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
            connection.request("POST", where.path, body, headers)
            answer = connection.getresponse()
            answer.read()
            connection.close()
            times.append(1000 * (time.perf_counter() - began))
            if answer.status != 200:
                raise RuntimeError(f"predict answered {answer.status}")
        return times

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return [t for times in pool.map(one_client, range(clients)) for t in times]


def percentile(values, q):
    return float(np.percentile(values, q))


def bare_model(weights, photo_path, count):
    """ms per call of the network on the photo's two crops, and on 4 photos' (8 crops)."""
    from PIL import Image

    from workers.pipeline.features import load_xception
    from workers.pipeline.images import left_and_right_squares, letterbox_photo

    network = load_xception(weights, "auto")
    frame = letterbox_photo(Image.open(photo_path).convert("RGB"), 534, 300)
    crops = np.stack(left_and_right_squares(frame, 299))
    results = {}
    for label, batch in (("2 crops (1 image)", crops), ("8 crops (4 images)", np.concatenate([crops] * 4))):
        network(batch)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            network(batch)
            times.append(1000 * (time.perf_counter() - began))
        results[label] = times
    return results, network.precision


def part_latency(args):
    from tests.conftest import free_port
    from tests.media import ffmpeg

    scratch = Path(tempfile.mkdtemp(prefix="bench-tagger-"))
    processes = []
    try:
        env = dict(os.environ, DATA_DIR=str(scratch / "data"), XCEPTION_WEIGHTS=args.weights,
                   DATABASE_URL="", REDIS_URL="", PREDICT_ADDRESS=str(scratch / "predictor.sock"))
        print("2. latency: making a tagged collection of 6 generated videos ...", flush=True)
        token = make_tagged_collection(env, scratch)
        photo_path = scratch / "photo.jpg"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=299x299", "-frames:v", "1", photo_path)
        photo = photo_path.read_bytes()
        port = free_port()
        logs = open(scratch / "servers.log", "wb")
        processes.append(subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                          cwd=ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen([sys.executable, "manage.py", "predictor"], cwd=ROOT, env=env, stdout=logs,
                                          stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}/api/collections/1/predict/"
        deadline = time.monotonic() + 60
        while True:
            try:
                timed_requests(url, token, photo, 3, 1)  # warm-up: the network loads on the first request
                break
            except (OSError, RuntimeError):  # not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        single = timed_requests(url, token, photo, args.requests, 1)
        together = timed_requests(url, token, photo, args.requests, 4)
        load = OtherLoad()  # while the servers idle: what else runs on the machine
        bare, precision = bare_model(args.weights, photo_path, args.requests)
        print(f"   predict, 299x299 JPEG, end to end over HTTP (weights {args.weights}, {precision}):")
        print(f"   {'':<28} {'median ms':>9} {'p95 ms':>7}")
        print(f"   {'1 client':<28} {statistics.median(single):>9.0f} {percentile(single, 95):>7.0f}")
        print(f"   {'4 concurrent clients':<28} {statistics.median(together):>9.0f} {percentile(together, 95):>7.0f}"
              f"   (aim: p95 < 300)")
        for label, times in bare.items():
            print(f"   {'bare model, ' + label:<28} {statistics.median(times):>9.0f} {percentile(times, 95):>7.0f}")
        print(f"   other processes used {load.cores():.2f} of {os.cpu_count()} cores during the bare model's runs")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="a DATA_DIR holding a collection ingested with the real weights")
    parser.add_argument("--collection", default="sample", help="its name (default sample)")
    parser.add_argument("--labels", type=int, nargs="+", default=[5, 20], help="labelled frames per class")
    parser.add_argument("--weights", default="random", help="XCEPTION_WEIGHTS for part 2 (default random)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per client (default 40)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--fine-tune-seeds", type=int, default=0,
                        help="part 3: fine-tuning against the frozen head, over this many seeds (default 0: skipped; "
                             "minutes a seed; needs --data-dir and the real --weights)")
    parser.add_argument("--fine-tune-labels", type=int, default=20, help="labelled frames per class for part 3")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")
    part_accuracy(args)
    if not args.skip_latency:
        part_latency(args)
    if args.fine_tune_seeds and args.data_dir:
        part_fine_tune(args)


if __name__ == "__main__":
    main()
