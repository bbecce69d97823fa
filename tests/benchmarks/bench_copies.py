"""Copy detection on a test set of copies made from the sample media (copy_testset.py), with
the real Xception weights: precision and recall per kind of copy, where contained clips are
found, how long it takes; and, with --fit, the score's logistic weights fitted to it.

A found relation (a pair of files at a score >= --threshold) is right when the ground truth
links the two files: listed in truth.json, or through a full copy of either (a copy of a copy
is a copy; two clips of one video are not copies of each other). Frames and features are
cached under --cache, so a second run takes seconds. Run from the repository root:

    .venv/bin/python tests/benchmarks/copy_testset.py /tmp/copyset
    .venv/bin/python tests/benchmarks/bench_copies.py /tmp/copyset [--fit] [--threshold 0.5]
"""
import argparse
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "benchmarks")]

from quality_report import collect_features, collect_frames  # noqa: E402
from workers.pipeline import copies  # noqa: E402
from workers.pipeline.arrays import open_array  # noqa: E402
from workers.pipeline.frame_match import frame_points  # noqa: E402

LISTED = 12  # wrong and missed pairs shown, at most
WEIGHTS = ROOT.parent / "shared" / "weights" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"


class Truth:
    """Which files are copies of which, from the test set's list."""

    def __init__(self, rows):
        self.rows = rows
        self.twin_of = {}  # full copies: file -> the file it copies
        for row in rows:
            if row["kind"] in ("copy", "exact"):
                self.twin_of[row["a"]] = row["b"]
        self.links = {(self._root(r["a"]), self._root(r["b"])) for r in rows}
        self.links |= {(b, a) for a, b in self.links}

    def _root(self, name):
        while name in self.twin_of:
            name = self.twin_of[name]
        return name

    @staticmethod
    def same_video(a, b):
        """Whether two photos are frames of one video (named <video>-<seconds>s[-<copy>].jpg)."""
        return a.endswith(".jpg") and a.rsplit("s", 1)[0].rsplit("-", 1)[0] == b.rsplit("s", 1)[0].rsplit("-", 1)[0]

    def related(self, a, b):
        a, b = self._root(a), self._root(b)
        return a == b or (a, b) in self.links

    def transform(self, a, b):
        for row in self.rows:
            if {row["a"], row["b"]} == {a, b}:
                return row["transform"]
        return "through a copy" if self.related(a, b) else "unrelated"


def load(part_dir, cache, weights):
    """(names of the files, Files, PCA vectors, points_of) for one folder of the test set."""
    from workers.pipeline.reduce import StreamingPCA

    sources = collect_frames(part_dir, cache, every=20)
    features = collect_features(sources, cache, weights)
    names = [name for name, _, _ in sources]
    times = np.concatenate([open_array(folder, "index")["time"] for _, folder, _ in sources])
    sources_of = np.repeat(np.arange(len(sources)), [count for _, _, count in sources])
    starts = np.r_[0, np.cumsum([count for _, _, count in sources])]
    stores = [open_array(folder, "frames") for _, folder, _ in sources]

    @functools.lru_cache(maxsize=None)
    def points_of(row):
        source = int(sources_of[row])
        return frame_points(np.asarray(stores[source][row - starts[source]]))

    vectors = StreamingPCA(256).fit([features], len(features)).transform(features)
    return names, copies.Files(sources_of, times), vectors, points_of


def evaluate(part, names, stretches, truth, threshold):
    by_pair = {}
    for stretch in stretches:
        key = tuple(sorted((names[stretch.a], names[stretch.b])))
        by_pair.setdefault(key, stretch)  # the best stretch of the pair
    found = {key for key, s in by_pair.items() if s.score >= threshold}
    wanted = {tuple(sorted((r["a"], r["b"]))) for r in truth.rows if r["a"] in names and r["b"] in names}
    per_transform = defaultdict(lambda: [0, 0])
    for key in wanted:
        per_transform[truth.transform(*key)][1] += 1
        per_transform[truth.transform(*key)][0] += key in found
    right = [key for key in found if truth.related(*key)]
    one_video = {key for key in by_pair if not truth.related(*key) and truth.same_video(*key)}
    wrong = [key for key in found if not truth.related(*key) and key not in one_video]
    if one_video:
        print(f"\n{part}: frames of one video at different times, not counted: {len(one_video & found)} of "
              f"{len(one_video)} such candidate pairs called copies")
    print(f"\n{part}: {len(found)} pair(s) called copies at score >= {threshold}: {len(right)} right "
          f"({len(set(right) & wanted)} listed, {len(set(right) - wanted)} through a copy), {len(wrong)} wrong")
    print(f"  {'copy':40s} found / listed")
    for transform, (hit, total) in sorted(per_transform.items()):
        print(f"  {transform:40s} {hit:5d} / {total}")
    listed_found = sum(key in found for key in wanted)
    print(f"  precision {len(right) / max(len(right) + len(wrong), 1):.3f}, recall of listed pairs {listed_found / max(len(wanted), 1):.3f}")
    for key in sorted(wrong, key=lambda key: -by_pair[key].score)[:LISTED]:
        s = by_pair[key]
        print(f"  WRONG {s.score:.2f} {key[0]} ~ {key[1]} ({s.verified}/{s.checked} frames, difference {s.difference:.2f})")
    for key in sorted(wanted - found)[:LISTED]:
        s = by_pair.get(key)
        print(f"  MISSED {key[0]} ~ {key[1]} ({truth.transform(*key)})"
              + (f": best {s.score:.2f}, {s.verified}/{s.checked} frames, difference {s.difference:.2f}" if s else ""))
    for row in truth.rows:
        if row.get("b_start") is None or row["kind"] != "contained" or row["a"] not in names:
            continue
        hits = [s for s in stretches if {names[s.a], names[s.b]} == {row["a"], row["b"]} and s.score >= threshold]
        for s in hits:
            at = s.b_start - s.a_start if names[s.a] == row["a"] else s.a_start - s.b_start
            print(f"  offset of {row['a']} in {row['b']}: {at:.2f} s, true {row['b_start']:.2f} s "
                  f"(error {abs(at - row['b_start']):.2f} s)")


def calibration_samples(names, stretches, truth):
    """(features, right) of each pair of files' best stretch (most verified frames, then the
    least difference), leaving out frames of one video at different times and mirror images."""
    best = {}
    for s in sorted(stretches, key=lambda s: (-s.verified, s.difference)):
        best.setdefault(tuple(sorted((names[s.a], names[s.b]))), s)
    return [(copies.score_features(s.verified, s.checked, s.difference), truth.related(*key))
            for key, s in best.items() if (truth.related(*key) or not truth.same_video(*key))
            and ("mirrored" in key[0]) == ("mirrored" in key[1])]  # a mirror image is found only when asked for


def fit(samples):
    """Logistic weights for copies.SCORE_WEIGHTS from (features, right) samples."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([f for f, _ in samples])
    y = np.array([right for _, right in samples])
    model = LogisticRegression(C=1.0).fit(x, y)
    print(f"\nfitted on {len(y)} stretches ({int(y.sum())} right): SCORE_WEIGHTS = "
          f"({model.intercept_[0]:.2f}, {', '.join(f'{w:.2f}' for w in model.coef_[0])})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("testset", type=Path)
    parser.add_argument("--cache", type=Path, help="frames and features (default: TESTSET/cache)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--fit", action="store_true", help="fit the score's weights and print them")
    args = parser.parse_args()
    cache = args.cache or args.testset / "cache"
    samples = []
    for part in ("videos", "photos"):
        truth = Truth(json.loads((args.testset / f"{part}-truth.json").read_text()))
        names, files, vectors, points_of = load(args.testset / part, cache / part, args.weights)
        started = time.perf_counter()
        stretches = copies.find_stretches(vectors, files, points_of)
        seconds = time.perf_counter() - started
        print(f"\n{part}: {len(names)} files, {len(vectors)} frames: {len(stretches)} stretch(es) in {seconds:.1f} s "
              f"({points_of.cache_info().currsize} frames described)")
        evaluate(part, names, stretches, truth, args.threshold)
        samples += calibration_samples(names, stretches, truth)
    if args.fit:
        fit(samples)


if __name__ == "__main__":
    main()
