"""Benchmark of clustering (workers/pipeline/clustering.py): speed of the default, and
quality of every method against known classes.

What it measures, in one run:

1. Speed of the default, `cluster(X)` (method="auto": Louvain communities of the
   15-nearest-neighbour graph of a sample of at most 10,000 items, the others joining the
   nearest community centre, then `describe`), for each of `--sizes` frames (default
   10,000 and 1,000,000). The frames are synthetic 256-d float32 vectors with known groups:
   12 Gaussian groups of unequal sizes (weights 1 to 10, geometric), 4 of them anisotropic
   (axis scales 0.25 to 2, rotated), in a 16-d subspace, plus isotropic noise in all 256
   dimensions. Centres are 5 to 8 apart in the subspace and a member lies about 3 from
   its centre (0.7 per axis; up to 2 along an anisotropic group's long axes), so the
   closest groups nearly touch and the task is not trivial. They are written with the
   pipeline's ArrayWriter into a temporary folder and read back with `open_array`, a
   memmap, so they are on disk, not in RAM, as the PCA vectors are in the pipeline.
   Each size runs in a fresh child process (this script with a hidden --child flag),
   which imports everything, warms up on the first 2,000 rows, then times `cluster(X)`
   end to end, `--repeat` times (default: 3 for sizes up to 100,000, 1 above: one run at
   1M); the median is reported against the aims, under 10 s for 10,000 frames and under
   2 min for 1,000,000 (other sizes are held to neither). Its parts are timed in the
   same runs by wrapping, not re-implementing, what `auto` calls: sklearn's
   kneighbors_graph (kNN graph), networkx's from_scipy_sparse_array (graph conversion),
   louvain_communities (Louvain), clustering.nearest_centre (the items outside the
   sample) and clustering.describe; "the rest" is the total minus those (checks, the
   sample, the symmetric graph, community centres); the parts shown are those of the run
   with the median total. Memory is the child's peak RSS, VmHWM from /proc/self/status,
   reset before each run (tests/benchmarks/procmem.py; ru_maxrss would carry over the
   parent's RSS across fork+exec); the largest over the runs is shown, with [mapped]:
   how much of the RSS at the run's end was pages of mapped files (the memmap),
   which the kernel can drop. Also shown: the clusters found, NMI and ARI against the 12
   groups (seed 0).

2. Quality against known classes, the median and [min-max] over clustering seeds
   0..`--seeds`-1 (default 5; the `seed` argument of `cluster`; the data stay fixed),
   for auto, kmeans told the true number of classes, and affinity at its default
   preference (the median similarity): number of clusters, NMI and ARI
   (sklearn.metrics.normalized_mutual_info_score, adjusted_rand_score) and seconds per
   run. For reference, Ward's hierarchy cut at its best silhouette (k from 2 to 20; the
   method `auto` replaced; deterministic, so one run) on the same items.
   a. Generated groups, 256-d float32 (a 16-d subspace plus noise):
      blobs          8 well-separated Gaussian groups, 2,000 items;
      superclasses   8 classes under 2 superclasses (4 classes each; the classes lie
                     close around their superclass's centre, the superclasses far
                     apart), 2,000 items: the case where Ward cut by silhouette picks
                     the 2 superclasses;
      unequal        the 12 groups of part 1, 3,000 items;
      digits         scikit-learn's bundled load_digits: 1,797 8x8 images of 10
                     digits, 64-d, real data (no download).
   b. Real features of sample media, when `--collection-dir` (a collection's `embedding`
      folder: arrays `pca` and `index`, index fields source, frame, time) and `--database`
      (the SQLite database with explorer_source: id, path) are given; otherwise skipped
      with a note. Two class definitions of a frame:
        video   its source file;
        scene   the same, except that all of asl_gestures/ is one scene (one signer,
                one room), head-pose-*.gif one, face-demographics-*.gif one, and a GIF
                excerpt of a video in the collection (car-detection.gif, bottle-
                detection.gif, one-by-one-person-detection.gif) the scene of that video.
      Scored twice: clustering the frames, and clustering clips (each source cut into
      stretches of 6 s, `clip_groups`, represented by their mean vector, `group_means`),
      each frame taking its clip's cluster; scores are always per frame.
      A collection of the sample videos with 1,276 frames, for instance:
        DATA_DIR=/tmp/x XCEPTION_WEIGHTS=../shared/weights/xception_weights_tf_dim_ordering_tf_kernels_notop.h5 \\
            SAMPLE_EVERY=4 python manage.py ingest ../shared/media/intel-sample-videos --collection dense
      then --collection-dir /tmp/x/collections/ID/embedding --database /tmp/x/explorer.sqlite3
      (ID: the collection's id, 1 in a new DATA_DIR).

3. The versions of numpy, scikit-learn, networkx and scipy, and the CPU count.

The figures are only meaningful on an otherwise idle machine: part 1 reports how much CPU
other processes used meanwhile (the machine's busy time from /proc/stat minus this
process's and its children's) and flags it above 0.2 cores.

`--quick` is a smoke run in under a minute: sizes 2,000 and 20,000 (one run each), 2
seeds, generated sets of 800 items (digits and media in full).

Run from the repository root (this is not a pytest test):

    .venv/bin/python tests/benchmarks/bench_clusters.py [--sizes 10000 1000000] [--repeat N]
        [--seeds 5] [--collection-dir DIR --database FILE] [--quick]
"""
import argparse
import functools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import closing
from pathlib import Path, PurePosixPath

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.benchmarks.procmem import OtherLoad, peak_mib, reset_peak, status_mib  # noqa: E402
from workers.pipeline import clustering  # noqa: E402
from workers.pipeline.arrays import ArrayWriter, open_array  # noqa: E402

DIM = 256  # the pipeline's PCA dimensions
RANK = 16  # the generated groups' subspace
NOISE = 0.5  # isotropic noise in all DIM dimensions
GROUPS = 12  # the unequal groups of part 1
SEPARATION = 1.5  # std of their centres in the subspace
WRITE_ROWS = 65_536
WARM_UP_ROWS = 2_000
AIMS = {10_000: 10.0, 1_000_000: 120.0}  # seconds
CLIP_SECONDS = 6.0
WARD_KS = range(2, 21)
BUSY_CORES = 0.2
PARTS = ("kNN graph", "graph to networkx", "Louvain", "nearest centre", "describe", "the rest")




# ---------------------------------------------------------------- generated data

def embed(latent, rng, noise=NOISE):
    """Latent points (n, r) placed in DIM dimensions by a random orthonormal basis, plus noise."""
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, latent.shape[1])))
    return (latent @ basis.T + noise * rng.standard_normal((len(latent), DIM))).astype(np.float32)


class UnequalGroups:
    """The 12 groups of part 1: unequal sizes, 4 anisotropic, in a RANK-d subspace of DIM."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        weights = np.geomspace(1, 10, GROUPS)
        rng.shuffle(weights)
        self.weights = weights / weights.sum()
        self.centres = rng.standard_normal((GROUPS, RANK)) * SEPARATION
        self.shapes = []  # a member is centre + shape @ z, z standard normal
        for group in range(GROUPS):
            axes = np.geomspace(0.25, 2.0, RANK) if group % 3 == 0 else np.full(RANK, 0.7)
            rotation, _ = np.linalg.qr(rng.standard_normal((RANK, RANK)))
            self.shapes.append(rotation * axes)
        self.basis, _ = np.linalg.qr(rng.standard_normal((DIM, RANK)))
        self.seed = seed

    def chunks(self, n, chunk=WRITE_ROWS):
        """(vectors float32, groups) in chunks of `chunk` rows, n in all."""
        rng = np.random.default_rng(self.seed + 1)
        groups = rng.choice(GROUPS, size=n, p=self.weights)
        for start in range(0, n, chunk):
            y = groups[start:start + chunk]
            latent = self.centres[y]
            z = rng.standard_normal((len(y), RANK))
            for group in np.unique(y):
                rows = y == group
                latent[rows] += z[rows] @ self.shapes[group].T
            vectors = rng.standard_normal((len(y), DIM), dtype=np.float32) * np.float32(NOISE)
            vectors += (latent @ self.basis.T).astype(np.float32)
            yield vectors, y

    def make(self, n):
        parts = list(self.chunks(n))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def blobs(n, seed=0, k=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.standard_normal((k, RANK)) * 5.0
    return embed(centres[y] + rng.standard_normal((n, RANK)), rng), y


def superclasses(n, seed=0, apart=12.0, within=4.0):
    """8 classes, 4 around each of 2 superclass centres `apart` apart; class centres spread
    `within` (typical distance between two of one superclass), members 0.5 per axis."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, n)
    parents = rng.standard_normal((2, RANK))
    parents *= apart / np.linalg.norm(parents[0] - parents[1])
    classes = parents[np.arange(8) // 4] + rng.standard_normal((8, RANK)) * within / np.sqrt(2 * RANK)
    return embed(classes[y] + 0.5 * rng.standard_normal((n, RANK)), rng), y


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target


# ---------------------------------------------------------------- 1. speed of the default

class PartTimer:
    """Wraps functions that `auto` and `cluster` look up at call time and adds up their seconds."""

    def __init__(self):
        self.seconds = {}

    def wrap(self, owner, attribute, part):
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

        setattr(owner, attribute, timed)


def run_child(job):
    """In a fresh process: time cluster(X) on one generated array; progress lines, then JSON."""
    import networkx
    import sklearn.neighbors
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    X = open_array(job["folder"], "pca")
    truth = np.load(job["truth"])
    clustering.cluster(np.array(X[:WARM_UP_ROWS]))  # first calls' lazy imports and set-ups
    timer = PartTimer()
    timer.wrap(sklearn.neighbors, "kneighbors_graph", "kNN graph")
    timer.wrap(networkx, "from_scipy_sparse_array", "graph to networkx")
    timer.wrap(networkx.community, "louvain_communities", "Louvain")
    timer.wrap(clustering, "nearest_centre", "nearest centre")
    timer.wrap(clustering, "describe", "describe")
    mapped_before, resident = status_mib("RssFile"), status_mib("VmRSS")
    runs = []
    for number in range(job["repeat"]):
        timer.seconds = {}
        peaks_reset = reset_peak()
        start = time.perf_counter()
        result = clustering.cluster(X)
        seconds = time.perf_counter() - start
        parts = dict(timer.seconds)
        parts["the rest"] = seconds - sum(parts.values())
        runs.append({"seconds": seconds, "parts": parts, "peak_mib": peak_mib(), "peaks_reset": peaks_reset,
                     "mapped_mib": status_mib("RssFile") - mapped_before})
        print(f"  {job['rows']:>9,} frames, run {number + 1}/{job['repeat']}: {seconds:7.1f} s, "
              f"{len(result)} clusters, peak RSS {runs[-1]['peak_mib']:.0f} MiB", flush=True)
    labels = result.labels
    print(json.dumps({"rows": job["rows"], "runs": runs, "clusters": len(result), "resident_mib": resident,
                      "nmi": normalized_mutual_info_score(truth, labels),
                      "ari": adjusted_rand_score(truth, labels), "details": result.details}))


def write_frames(folder, rows):
    """The unequal groups, `rows` of them, as a pipeline array `pca` in `folder`; their groups."""
    truth = np.empty(rows, dtype=np.int8)
    with ArrayWriter(folder, "pca", (DIM,), np.float32, produced_by={"stage": "bench_clusters"}) as out:
        start = 0
        for vectors, y in UnequalGroups().chunks(rows):
            out.append(vectors)
            truth[start:start + len(y)] = y
            start += len(y)
    np.save(Path(folder) / "truth.npy", truth)
    return Path(folder) / "truth.npy"


def speed(rows, repeat, scratch):
    folder = Path(scratch) / f"frames-{rows}"
    print(f"speed, {rows:,} frames: writing the generated frames...", flush=True)
    written = time.perf_counter()
    job = {"rows": rows, "folder": str(folder), "truth": str(write_frames(folder, rows)), "repeat": repeat}
    written = time.perf_counter() - written
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    other = OtherLoad()
    result = None
    with tempfile.TemporaryFile(mode="w+") as errors:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=REPO)
        try:
            for line in child.stdout:
                if line.startswith("{"):
                    result = json.loads(line)
                else:
                    print(line, end="", flush=True)
            child.wait()
        finally:
            if child.poll() is None:  # interrupted: do not leave it running
                child.kill()
                child.wait()
            child.stdout.close()
        if child.returncode or result is None:
            errors.seek(0)
            sys.exit(f"the child for {rows:,} frames failed:\n{errors.read()}")
    return {**result, "write_s": written, "other_cores": other.cores(), "repeat": repeat}


def short(rows):
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if rows >= unit and rows % unit == 0:
            return f"{rows // unit}{name}"
    return f"{rows:,}"


def print_speed(results):
    print()
    repeats = ", ".join(f"{short(r['rows'])} {r['repeat']}" for r in results)
    print(f"1. Speed of the default, cluster(X) with method=\"auto\", on generated 256-d float32 frames (a memmap): "
          f"{GROUPS} groups of unequal sizes; a fresh process per size; median of the runs (runs: {repeats})")
    print(f"  {'':<30}" + "".join(f"{short(r['rows']) + ' frames':>16}" for r in results))

    def row(label, cells):
        print(f"  {label:<30}" + "".join(f"{cell:>16}" for cell in cells))

    medians = []
    for r in results:
        ordered = sorted(r["runs"], key=lambda run: run["seconds"])
        medians.append(ordered[(len(ordered) - 1) // 2])
    row("seconds, end to end", [f"{statistics.median(run['seconds'] for run in r['runs']):.1f}" for r in results])
    verdicts = []
    for r in results:
        aim = AIMS.get(r["rows"])
        seconds = statistics.median(run["seconds"] for run in r["runs"])
        verdicts.append("-" if aim is None else f"< {aim:.0f} s: {'ok' if seconds < aim else 'MISSED'}")
    row("aim", verdicts)
    for part in PARTS:
        row(f"  {part}", [f"{m['parts'][part]:.2f}" if part in m["parts"] else "-" for m in medians])
    row("RSS MiB after imports, warm-up", [f"{r['resident_mib']:.0f}" for r in results])
    row("peak RSS MiB [mapped]", [f"{max(run['peak_mib'] for run in r['runs']):.0f} "
                                  f"[{max(run['mapped_mib'] for run in r['runs']):.0f}]" for r in results])
    row(f"clusters found (true {GROUPS})", [str(r["clusters"]) for r in results])
    row("NMI", [f"{r['nmi']:.3f}" for r in results])
    row("ARI", [f"{r['ari']:.3f}" for r in results])
    row("items in the graph (sample)", [f"{r['details'].get('sample', r['rows']):,}" for r in results])
    row("(writing the frames, s)", [f"{r['write_s']:.1f}" for r in results])
    if not all(run["peaks_reset"] for r in results for run in r["runs"]):
        print("  (the kernel refused to reset VmHWM: peaks are cumulative over a child's runs)")
    print("  (parts: of the median run; [mapped]: file-backed pages, the memmap, in RSS at a run's end)")
    others = ", ".join(f"{short(r['rows'])} {r['other_cores']:.2f}" for r in results)
    busy = max(r["other_cores"] for r in results) > BUSY_CORES
    print(f"  other processes used, of {os.cpu_count()} cores on average: {others}"
          f"{'; figures likely distorted: rerun on a quiet machine' if busy else ''}")


# ---------------------------------------------------------------- 2. quality

def scene_of(path, video_by_stem):
    """A frame's scene (see the docstring): `video_by_stem` maps the stem of every non-GIF
    source to its path."""
    name = PurePosixPath(path)
    if "asl_gestures" in name.parts:
        return "asl_gestures/"
    if name.suffix.lower() == ".gif":
        for prefix in ("head-pose-", "face-demographics-"):
            if name.name.startswith(prefix):
                return prefix + "*.gif"
        if name.stem in video_by_stem:
            return video_by_stem[name.stem]
    return path


def load_media(collection_dir, database):
    """Frame vectors, index, and the classes of each frame: [("video", y), ("scene", y)]."""
    vectors = np.asarray(open_array(collection_dir, "pca"), dtype=np.float32)
    index = open_array(collection_dir, "index")
    ids = np.unique(index["source"])
    with closing(sqlite3.connect(f"file:{Path(database).resolve()}?mode=ro", uri=True)) as db:
        paths = dict(db.execute(f"SELECT id, path FROM explorer_source WHERE id IN ({','.join('?' * len(ids))})",
                                [int(i) for i in ids]).fetchall())
    missing = [int(i) for i in ids if int(i) not in paths]
    if missing:
        sys.exit(f"{database} has no explorer_source row for source(s) {missing[:10]} of {collection_dir}: "
                 "is it the database of that collection?")
    video_by_stem = {PurePosixPath(p).stem: p for p in paths.values() if not p.lower().endswith(".gif")}
    scenes = {i: scene_of(p, video_by_stem) for i, p in paths.items()}
    _, video = np.unique(index["source"], return_inverse=True)
    _, scene = np.unique([scenes[int(i)] for i in index["source"]], return_inverse=True)
    return vectors, np.asarray(index), [("video", video.reshape(-1)), ("scene", scene.reshape(-1))]


def ward_silhouette(X):
    """Ward's hierarchy cut at the k of best silhouette (the method `auto` replaced)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import silhouette_score

    tree = linkage(X, "ward")
    best, best_score = None, -np.inf
    for k in WARD_KS:
        labels = fcluster(tree, k, "maxclust")
        if 1 < len(np.unique(labels)) < len(X):
            score = silhouette_score(X, labels)
            if score > best_score:
                best, best_score = labels, score
    return best


def evaluate(name, X, classes, seeds, expand=None):
    """Rows of the quality table for one set of items. `classes`: [(definition, y per frame)];
    `expand`: for clips, the clip of each frame (a clip's label goes to its frames)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    def run(method, **kwargs):
        outcomes = []
        for seed in seeds:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                try:
                    labels = clustering.cluster(X, method=method, seed=seed, **kwargs).labels
                except clustering.ClusteringError as error:
                    outcomes.append({"error": str(error)})
                    continue
            seconds = time.perf_counter() - start
            for warning in caught:
                if not issubclass(warning.category, ConvergenceWarning):
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
            outcomes.append({"labels": labels if expand is None else labels[expand], "seconds": seconds,
                             "unconverged": any(issubclass(w.category, ConvergenceWarning) for w in caught)})
        return outcomes

    shared = {"auto": run("auto"), "affinity": run("affinity")}
    start = time.perf_counter()
    ward = ward_silhouette(X)
    ward = [{"labels": ward if expand is None else ward[expand], "seconds": time.perf_counter() - start}]
    rows = []
    for definition, y in classes:
        true_k = len(np.unique(y))
        methods = [("auto", shared["auto"]), (f"kmeans, k={true_k}", run("kmeans", k=true_k)),
                   ("affinity", shared["affinity"]), ("ward+silhouette (ref.)", ward)]
        for method, outcomes in methods:
            done = [o for o in outcomes if "labels" in o]
            rows.append({"dataset": name, "items": len(X), "classes": f"{definition} ({true_k})", "method": method,
                         "runs": len(outcomes), "failed": [o["error"] for o in outcomes if "error" in o],
                         "unconverged": sum(bool(o.get("unconverged")) for o in outcomes),
                         "clusters": [len(np.unique(o["labels"])) for o in done],
                         "nmi": [normalized_mutual_info_score(y, o["labels"]) for o in done],
                         "ari": [adjusted_rand_score(y, o["labels"]) for o in done],
                         "seconds": [o["seconds"] for o in done]})
    print(f"  {name}: done", flush=True)
    return rows


def spread(values, digits):
    if not values:
        return "failed"
    median = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1 or min(values) == max(values):
        return median
    return f"{median} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def print_quality(rows, seeds, notes):
    print()
    print(f"2. Quality against known classes: median [min-max] over clustering seeds {seeds[0]}..{seeds[-1]} "
          f"(the data stay fixed); ward+silhouette is deterministic, one run")
    header = (f"  {'items':<38}{'classes':<16}{'method':<24}{'clusters':>14}{'NMI':>22}{'ARI':>22}"
              f"{'s/run':>8}")
    print(header)
    previous = None
    for r in rows:
        items = f"{r['dataset']} ({r['items']:,})" if (r["dataset"], r["items"]) != previous else ""
        previous = (r["dataset"], r["items"])
        clusters = spread(r["clusters"], 0)
        print(f"  {items:<38}{r['classes']:<16}{r['method']:<24}{clusters:>14}{spread(r['nmi'], 3):>22}"
              f"{spread(r['ari'], 3):>22}{statistics.median(r['seconds']) if r['seconds'] else 0:>8.2f}")
        for error in sorted(set(r["failed"])):
            print(f"  {'':<38}  {r['method']} failed in {r['failed'].count(error)} of {r['runs']} run(s): {error}")
        if r["unconverged"]:
            print(f"  {'':<38}  ^ did not converge in {r['unconverged']} of {r['runs']} run(s) (scikit-learn's "
                  "ConvergenceWarning); its labels were kept and scored, as clustering.py keeps them")
    for note in notes:
        print(f"  {note}")


def quality(args, seeds, size):
    datasets = [("blobs, 8 groups", *blobs(size)),
                ("superclasses, 8 in 2", *superclasses(size)),
                (f"unequal, {GROUPS} groups", *UnequalGroups().make(int(size * 1.5))),
                ("digits (sklearn)", *digits())]
    print(f"quality: generated sets and digits, seeds {seeds[0]}..{seeds[-1]}...", flush=True)
    rows = []
    for name, X, y in datasets:
        rows += evaluate(f"{name}, {X.shape[1]}-d", X, [("true", y)], seeds)
    notes = []
    if args.collection_dir and args.database:
        vectors, index, classes = load_media(args.collection_dir, args.database)
        clips = clustering.clip_groups(index["source"], index["time"], CLIP_SECONDS)
        clip_vectors = clustering.group_means(vectors, clips)
        print(f"quality: media, {len(vectors):,} frames, {len(clip_vectors):,} clips...", flush=True)
        rows += evaluate("media frames", vectors, classes, seeds)
        rows += evaluate(f"media clips of {CLIP_SECONDS:g} s", clip_vectors, classes, seeds, expand=clips)
        notes.append(f"media: {args.collection_dir}; scores per frame; clips: {len(clip_vectors):,} of "
                     f"{CLIP_SECONDS:g} s, each frame scored with its clip's cluster")
    else:
        notes.append("media: skipped (give --collection-dir and --database to score real features: see --help)")
    return rows, notes


# ---------------------------------------------------------------- main

def versions():
    import networkx
    import scipy
    import sklearn

    return (f"3. numpy {np.__version__}, scikit-learn {sklearn.__version__}, networkx {networkx.__version__}, "
            f"scipy {scipy.__version__}, Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what is measured and how.")
    parser.add_argument("--sizes", type=int, nargs="+", help="frame counts for part 1 (default 10000 1000000)")
    parser.add_argument("--repeat", type=int,
                        help="timed runs per size (default: 3 up to 100,000 frames, 1 above)")
    parser.add_argument("--seeds", type=int, help="clustering seeds 0..N-1 for part 2 (default 5)")
    parser.add_argument("--collection-dir", help="a collection's embedding folder (arrays pca and index)")
    parser.add_argument("--database", help="the SQLite database holding that collection's explorer_source rows")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, 2 seeds, under a minute")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: part 1 for one size, in a fresh process
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return
    sizes = args.sizes or ([2_000, 20_000] if args.quick else [10_000, 1_000_000])
    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    quality_size = 800 if args.quick else 2_000
    if min(sizes) < WARM_UP_ROWS or (args.repeat is not None and args.repeat < 1) or not seeds:
        parser.error(f"sizes must be at least {WARM_UP_ROWS:,}, --repeat and --seeds at least 1")
    if bool(args.collection_dir) != bool(args.database):
        parser.error("--collection-dir and --database go together")
    # A terminated run still leaves through the `with` below, which removes the frames.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-clusters-") as scratch:
        results = []
        for rows in sizes:
            repeat = args.repeat or (1 if args.quick or rows > 100_000 else 3)
            try:
                results.append(speed(rows, repeat, scratch))
            finally:
                for leftover in (Path(scratch) / f"frames-{rows}").glob("*"):
                    leftover.unlink()  # a 1M array is 1 GB: gone before the next size
    quality_rows, notes = quality(args, seeds, quality_size)
    print_speed(results)
    print_quality(quality_rows, seeds, notes)
    print()
    print(versions())
    print(f"total time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
