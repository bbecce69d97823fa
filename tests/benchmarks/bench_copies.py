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
from workers.pipeline.frame_match import MomentPoints, frame_points  # noqa: E402

LISTED = 12  # wrong and missed pairs shown, at most
WEIGHTS = ROOT.parent / "shared" / "weights" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"


class Truth:
    """Which files are copies of which, and where: from the test set's list. Full copies
    (copy, exact) are one file for this; offsets are "the second file's time minus the first's"."""

    def __init__(self, rows):
        self.rows = rows
        self.twin_of = {}  # file -> (the file it fully copies, offset to it)
        for row in rows:
            if row["kind"] in ("copy", "exact"):
                self.twin_of[row["a"]] = (row["b"], row.get("b_start") or 0.0)
        self.links = {}  # (root a, root b) -> offsets of b's times to a's, or None: at no known one
        for row in rows:
            (a, to_a), (b, to_b) = self._root(row["a"]), self._root(row["b"])
            start = row.get("b_start")
            if row["kind"] == "contains":
                offsets = [start - row["a_start"]]
            elif start is None or row["kind"] == "exact" or row["a"].endswith(".jpg"):
                offsets = None
            else:
                offsets = start if isinstance(start, list) else [start]
            offsets = None if offsets is None else [d + to_a - to_b for d in offsets]
            self.links[(a, b)] = offsets
            self.links[(b, a)] = None if offsets is None else [-d for d in offsets]

    def _root(self, name):
        """(the file name fully copies, offset from name's times to its)."""
        offset = 0.0
        while name in self.twin_of:
            name, step = self.twin_of[name]
            offset += step
        return name, offset

    @staticmethod
    def same_video(a, b):
        """Whether two photos are frames of one video (named <video>-<seconds>s[-<copy>].jpg)."""
        return a.endswith(".jpg") and a.rsplit("s", 1)[0].rsplit("-", 1)[0] == b.rsplit("s", 1)[0].rsplit("-", 1)[0]

    def placements(self, a, b):
        """The offsets of b's times to a's where a and b show the same thing: [] for
        anywhere (photos, stills), None for unrelated files."""
        (root_a, to_a), (root_b, to_b) = self._root(a), self._root(b)
        if root_a == root_b:
            return [] if a.endswith(".jpg") else [to_a - to_b]
        if (root_a, root_b) not in self.links:
            return None
        offsets = self.links[(root_a, root_b)]
        return [] if offsets is None else [d + to_a - to_b for d in offsets]

    def related(self, a, b):
        return self.placements(a, b) is not None

    def right(self, a, b, offset, tolerance):
        """Whether a stretch of a and b at `offset` is a true copy at the right place."""
        placements = self.placements(a, b)
        return placements is not None and (not placements or min(abs(offset - d) for d in placements) <= tolerance)

    def transform(self, a, b):
        for row in self.rows:
            if {row["a"], row["b"]} == {a, b}:
                return row["transform"]
        return "through a copy" if self.related(a, b) else "unrelated"


def load(part_dir, cache, weights):
    """(names of the files, Files, PCA vectors, points_of, exact_points_of) for one folder of the test set."""
    from workers.pipeline.reduce import StreamingPCA

    sources = collect_frames(part_dir, cache, every=20)
    features = collect_features(sources, cache, weights)
    names = [name for name, _, _ in sources]
    times = np.concatenate([open_array(folder, "index")["time"] for _, folder, _ in sources])
    sources_of = np.repeat(np.arange(len(sources)), [count for _, _, count in sources])
    starts = np.r_[0, np.cumsum([count for _, _, count in sources])]
    stores = [open_array(folder, "frames") for _, folder, _ in sources]

    @functools.lru_cache(maxsize=None)
    def points_of(row, mirrored=False):
        source = int(sources_of[row])
        return frame_points(np.asarray(stores[source][row - starts[source]]), mirrored=mirrored)

    vectors = StreamingPCA(256).fit([features], len(features)).transform(features)
    moments = MomentPoints({i: part_dir / name for i, name in enumerate(names)},
                           lambda source: stores[source].shape[2:0:-1], budget=10**6)
    return names, copies.Files(sources_of, times), vectors, points_of, moments


def claims(names, files, stretches, truth):
    """[(stretch, pair of names, offset, right)]: each stretch, and whether the truth has its
    two files showing the same thing at its offset (within 1.5 sampling steps, 1 s at least)."""
    spans = files.spans
    steps = {f: copies.sampling_step(files.times[first:stop]) for f, (first, stop) in spans.items()}
    found = []
    for s in stretches:
        a, b = names[s.a], names[s.b]
        tolerance = max(1.0, 1.5 * max(steps[s.a], steps[s.b]))
        offset = s.b_start - s.a_start
        found.append((s, tuple(sorted((a, b))), offset, truth.right(a, b, offset, tolerance)))
    return found


def evaluate(part, names, files, stretches, truth, threshold):
    found = [claim for claim in claims(names, files, stretches, truth) if claim[0].score >= threshold]
    best = {}
    for s, key, _, right in sorted(claims(names, files, stretches, truth), key=lambda c: -c[0].score):
        best.setdefault(key, (s, right))
    one_video = {key for key in best if not truth.related(*key) and truth.same_video(*key)}
    wrong = [c for c in found if not c[3] and c[1] not in one_video]
    right = [c for c in found if c[3]]
    wanted = {tuple(sorted((r["a"], r["b"]))) for r in truth.rows if r["a"] in names and r["b"] in names}
    hit = {key for _, key, _, ok in right}
    if one_video:
        print(f"\n{part}: frames of one video at different times, not counted: {len(one_video & {c[1] for c in found})} "
              f"of {len(one_video)} such candidate pairs called copies")
    print(f"\n{part}: {len(found)} stretch(es) called copies at score >= {threshold}: {len(right)} right "
          f"({len(hit & wanted)} listed pairs, {len(hit - wanted)} pairs through a copy), {len(wrong)} wrong")
    per_transform = defaultdict(lambda: [0, 0])
    for key in wanted:
        per_transform[truth.transform(*key)][1] += 1
        per_transform[truth.transform(*key)][0] += key in hit
    print(f"  {'copy':40s} found / listed")
    for transform, (count, total) in sorted(per_transform.items()):
        print(f"  {transform:40s} {count:5d} / {total}")
    print(f"  precision {len(right) / max(len(found) - len(found) + len(right) + len(wrong), 1):.3f} (of stretches), "
          f"recall {len(hit & wanted) / max(len(wanted), 1):.3f} (of listed pairs)")
    for s, key, offset, _ in sorted(wrong, key=lambda c: -c[0].score)[:LISTED]:
        print(f"  WRONG {s.score:.2f} {key[0]} ~ {key[1]} at {offset:+.2f} s ({s.verified}/{s.checked} frames, "
              f"difference {s.difference:.2f})")
    for key in sorted(wanted - hit)[:LISTED]:
        s = best[key][0] if key in best else None
        print(f"  MISSED {key[0]} ~ {key[1]} ({truth.transform(*key)})"
              + (f": best {s.score:.2f}, {s.verified}/{s.checked} frames, difference {s.difference:.2f}" if s else ""))
    for s, key, offset, ok in right:
        placements = truth.placements(names[s.a], names[s.b])
        if placements and key in wanted and not any(r["kind"] == "copy" for r in truth.rows if {r["a"], r["b"]} == set(key)):
            error = min(abs(offset - d) for d in placements)
            print(f"  placed {names[s.a]} ~ {names[s.b]} at {offset:+.2f} s: error {error:.2f} s")


def calibration_samples(names, files, stretches, truth):
    """(features, right) of every stretch, leaving out frames of one video at different times
    and mirror images (found only when asked for)."""
    return [(copies.score_features(s.verified, s.checked, s.difference, s.single), right)
            for s, key, _, right in claims(names, files, stretches, truth)
            if (truth.related(*key) or not truth.same_video(*key)) and ("mirrored" in key[0]) == ("mirrored" in key[1])]


def fit(samples):
    """Logistic weights for copies.SCORE_WEIGHTS from (features, right) samples."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([f for f, _ in samples])
    y = np.array([right for _, right in samples])
    model = LogisticRegression(C=100.0, max_iter=1000).fit(x, y)
    print(f"\nfitted on {len(y)} stretches ({int(y.sum())} right): SCORE_WEIGHTS = "
          f"({model.intercept_[0]:.2f}, {', '.join(f'{w:.2f}' for w in model.coef_[0])})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("testset", type=Path)
    parser.add_argument("--cache", type=Path, help="frames and features (default: TESTSET/cache)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--fit", action="store_true", help="fit the score's weights and print them")
    parser.add_argument("--mirrored", action="store_true", help="find mirror images too (DUPLICATES_MIRRORED)")
    parser.add_argument("--sampled-only", action="store_true",
                        help="compare sampled frames only, never a frame decoded at the exact moment")
    args = parser.parse_args()
    cache = args.cache or args.testset / "cache"
    samples = []
    for part in ("videos", "photos"):
        truth = Truth(json.loads((args.testset / f"{part}-truth.json").read_text()))
        names, files, vectors, points_of, moments = load(args.testset / part, cache / part, args.weights)
        started = time.perf_counter()
        stretches = copies.find_stretches(vectors, files, points_of, mirrored_points_of=(
            functools.partial(points_of, mirrored=True) if args.mirrored else None),
            exact_points_of=None if args.sampled_only else moments)
        seconds = time.perf_counter() - started
        print(f"\n{part}: {len(names)} files, {len(vectors)} frames: {len(stretches)} stretch(es) in {seconds:.1f} s "
              f"({points_of.cache_info().currsize} frames described, {moments.decoded} "
              f"decoded at an exact moment)")
        evaluate(part, names, files, stretches, truth, args.threshold)
        samples += calibration_samples(names, files, stretches, truth)
    if args.fit:
        fit(samples)


if __name__ == "__main__":
    main()
