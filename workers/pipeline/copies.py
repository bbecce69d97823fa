"""Copies among a collection's files: near-duplicate photos and frames, videos that are copies
of others, and clips cut from longer videos (with where they sit in them).

How (each step bounded, so the work grows with the collection, not with its pairs):
1. Candidates: every frame's nearest frames of *other* files by the map's PCA vectors
   (centred, unit length; a faiss index searched with the file's own frames left out,
   `neighbours` a frame), above `min_similarity`. Those features find look-alikes, copies
   among them, cheaply.
2. Alignment: the candidate matches of each pair of files vote for the offset between
   them (the other's time minus this one's), in bins as wide as the files' sampling step.
   A copy or a cut clip puts its matches on one line of slope 1; look-alikes scatter. The
   best offset, then the next ones (a clip in a video twice, a loop), each make a stretch.
3. Verification: along a stretch every frame is paired with the other file's frame at the
   aligned time (up to `checks` of them, spread evenly) and the two are compared on their
   pixels (workers/pipeline/frame_match.py). The offset is first placed between sampled
   frames (_refined_offset), and a pair that shows the same scene but not the same instant
   is compared again with b's own frame at the exact moment (frame_match.Comparer), when the
   caller can decode one. The longest run of frames that show the same picture (bridging
   one failed check) is the copied stretch, its ends found between the checks by
   bisection: A's s1 to s2 is B's t1 to t2. A run none of whose frames is the same instant
   where it was compared at its very moment is a fixed camera at another time, not a copy
   (frame_match.an_instant). A file of one picture (a photo, a still video) is tried at
   each of its most similar frames' places instead, as a copy of one instant.
4. Score: a logistic function of the run's verified frames, the checked frames that did not
   verify and how different the pictures still are (score_features); calibrated on copies
   and look-alikes made from the sample media (tests/benchmarks/bench_copies.py --fit), so
   0.5 means as likely a copy as not.

Pairs of files are aligned on a thread a core. Relations at or above the threshold join
files into groups, with what each frame copies (workers/pipeline/copy_groups.py).
"""
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from workers.pipeline.frame_match import MAX_SINGLE_DIFFERENCE, Comparer, an_instant, same_picture
from workers.pipeline.in_order import InOrder

NEIGHBOURS = 32  # candidate frames of other files a frame: copies rank behind a fixed camera's other frames
MIN_SIMILARITY = 0.4  # below this cosine of PCA vectors no copy was seen (a 10% crop of a photo: 0.55)
# Lists an inverted-file index (from 50,000 frames) scans a query: neighbours this similar sit in the nearest
# lists (at 100,000 frames, 4, 8 and 16 of 316 found 99.8% of the exact search's); 8 keeps a margin.
CANDIDATE_NPROBE = 8
CHECKS = 12  # frame pairs compared along one stretch at most
SINGLE_FRAME_TRIES = 8  # places tried for a file of one picture in another (its most similar frames')
# Frames of one file all this alike (cosine of their PCA vectors) are one picture: a still video
# (its frames measured 0.9999; the most static clip of the sample media, 0.9945).
STILL_SIMILARITY = 0.999
MAX_STRETCHES = 4  # stretches one pair of files can share (a clip looped in another)
MIN_REPEAT = 3  # verified frames a pair's second stretch needs: a fixed camera shows two alike at other times
# The score's logistic weights on (1, log2 of 1 + verified frames, log2 of 1 + checked frames
# that did not verify, median difference, one picture, one picture x difference), fitted by
# tests/benchmarks/bench_copies.py --fit before the same-instant rule. Refitted after it, right and
# wrong stretches part almost wholly and the weights grow past what the data can tell (an unverified
# pair would score over 0.5): these, which call the same stretches copies, stay.
SCORE_WEIGHTS = (-0.19, 4.27, -2.30, -2.05, 1.95, 0.46)


@dataclass
class Stretch:
    """File a's times [a_start, a_stop] show what file b shows at [b_start, b_stop]."""
    a: int
    b: int
    a_start: float
    a_stop: float
    b_start: float
    b_stop: float
    verified: int  # frame pairs that showed the same picture
    checked: int  # frame pairs compared in the stretch's window
    difference: float  # median difference of the verified pairs (of one picture's: the least)
    score: float
    single: bool = False  # a file is one picture (a photo, a still): one verified pair is all there can be
    # [(row of a, row of b)] of the run: its ends verified, frames between its checks taken as they are
    pairs: list = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Files:
    """The collection's frames: rows of one file are contiguous and in time order."""
    sources: np.ndarray  # (n,) file of each frame
    times: np.ndarray  # (n,) seconds

    @functools.cached_property  # found once: the search, the alignment and the grouping all ask
    def spans(self):
        """{file: (first row, stop row)}"""
        from workers.pipeline.clips import Spans

        spans = Spans.from_sources(self.sources)
        return {int(s): (int(start), int(start + count)) for s, start, count in zip(spans.sources, spans.starts,
                                                                                     spans.counts)}


def score_features(verified, checked, difference, single):
    """What the score weighs: the frames of the run that showed the same picture (more is
    surer), the checked frames that did not (one frame in many is a look-alike), how
    different the run's pictures still are, and whether a file is one picture (then the
    difference is all there is to go by: it weighs apart)."""
    difference = min(difference, 5.0)
    return (math.log2(1 + verified), math.log2(1 + checked - verified), difference, float(single),
            float(single) * difference)


def score(verified, checked, difference, single):
    """The calibrated probability that a stretch is a copy."""
    if not math.isfinite(difference):
        return 0.0  # nothing could be aligned
    bias, *weights = SCORE_WEIGHTS
    z = bias + sum(w * f for w, f in zip(weights, score_features(verified, checked, difference, single)))
    return 1.0 / (1.0 + math.exp(-z))


def unit_rows(vectors):
    """The vectors centred and scaled to unit length: their dot products are cosines."""
    x = np.asarray(vectors, dtype=np.float32)
    x = x - x.mean(axis=0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def candidate_matches(x, files, neighbours=NEIGHBOURS, min_similarity=MIN_SIMILARITY, progress=None,
                      batch_size=512):
    """(rows a, rows b, similarities) with a < b, of frames of different files, from unit_rows x.
    Each file's frames are searched with its own frames left out of the index's answers, so a
    long still shot does not fill its neighbours with itself."""
    from workers.pipeline.neighbours import NeighbourIndex

    n = len(x)
    found_a, found_b, found_s = [], [], []
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = NeighbourIndex(nprobe=CANDIDATE_NPROBE).fit(x)
    for number, (first, stop) in enumerate(sorted(files.spans.values())):
        for start in range(first, stop, batch_size):
            rows = np.arange(start, min(stop, start + batch_size))
            _, near = index.search(x[rows], neighbours, excluding=(first, stop))
            valid = near >= 0
            similarity = np.einsum("nd,nkd->nk", x[rows], x[np.maximum(near, 0)])  # exact, for an approximate index
            kept = valid & (similarity >= min_similarity)
            a = np.broadcast_to(rows[:, None], near.shape)[kept]
            b, s = near[kept], similarity[kept]
            found_a.append(np.minimum(a, b))
            found_b.append(np.maximum(a, b))
            found_s.append(s)
        if progress:
            progress(stop / n)
    a, b, s = (np.concatenate(found) for found in (found_a, found_b, found_s))
    pairs, first_of = np.unique(np.stack([a, b], axis=1).astype(np.int64), axis=0, return_index=True)
    return pairs[:, 0], pairs[:, 1], s[first_of].astype(np.float32)


def one_picture(x, span):
    """Whether a file's frames (rows `span` of unit_rows x) are one picture: a photo, a one-frame clip
    or a still video."""
    first, stop = span
    return stop - first == 1 or float((x[first:stop] @ x[first]).min()) >= STILL_SIMILARITY


def sampling_step(times):
    """The usual time between a file's sampled frames (1 s for a photo or a one-frame clip)."""
    steps = np.diff(times)
    return float(np.median(steps)) if len(steps) else 1.0


def offset_peaks(offsets, weights, frames, tolerance, most=MAX_STRETCHES, least=MIN_REPEAT):
    """The offsets many frames agree on, best first: each a bin of width `tolerance` whose
    distinct frames of the first file (`frames`) carry most weight; a frame counts once a bin.
    A peak after the first needs `least` frames (fewer for a file of fewer frames)."""
    peaks, left = [], np.ones(len(offsets), bool)
    while left.any() and len(peaks) < most:
        bins = np.floor(offsets[left] / tolerance).astype(np.int64)
        support = {}
        for bin_, frame, weight in zip(bins, frames[left], weights[left]):
            for near in (bin_ - 1, bin_):  # a bin and its neighbour: a peak on a bin edge is not split
                support.setdefault(near, {})
                support[near][frame] = max(support[near].get(frame, 0.0), weight)
        best = max(support, key=lambda b: (sum(support[b].values()), -b))
        if peaks and len(support[best]) < least:
            break
        inside = np.flatnonzero(left & (offsets >= best * tolerance) & (offsets < (best + 2) * tolerance))
        # each frame's most similar match in the peak says where it is; their median is the offset
        strongest = inside[np.lexsort((-weights[inside], frames[inside]))]
        firsts = strongest[np.r_[True, frames[strongest][1:] != frames[strongest][:-1]]]
        peaks.append(float(np.median(offsets[firsts])))
        left &= np.abs(offsets - peaks[-1]) > 2 * tolerance
    return peaks


def align_pair(a, b, rows_a, rows_b, similarities, files, spans, x, comparer, checks=CHECKS, pictures=None):
    """The Stretches files a and b share, from their candidate matches (rows of a, rows of b);
    a stretch where no frame pair showed the same picture comes with verified=0 (its score is
    low, and it says how close the pair came). `pictures`: {file: whether it is one picture}
    (one_picture; found here if not given)."""
    times = files.times
    (a_first, a_stop), (b_first, b_stop) = spans[a], spans[b]
    tolerance = max(sampling_step(times[a_first:a_stop]), sampling_step(times[b_first:b_stop]), 0.05)
    # A file of one picture (a photo, a still) has nothing to vote with: each of its candidate places is tried.
    pictures = tuple(pictures[f] if pictures else one_picture(x, spans[f]) for f in (a, b))
    single = any(pictures)
    offsets = times[rows_b] - times[rows_a]
    if single:  # its most similar frames' places, each tried
        peaks = list(dict.fromkeys(offsets[np.argsort(-similarities, kind="stable")][:SINGLE_FRAME_TRIES].tolist()))
    else:
        peaks = offset_peaks(offsets, similarities, rows_a, tolerance,
                             least=min(MIN_REPEAT, a_stop - a_first, b_stop - b_first))
    found = [_stretch_at(offset, a, b, files, spans, x, comparer, checks, pictures) for offset in peaks]
    # Best first. The longer file's frames belong to one stretch of the pair at most; the
    # shorter file's may repeat (a clip looped in the other), but only in a stretch about as
    # long as the best (MIN_REPEAT frames at least) and as close as a photo's copy: a few frames
    # that verify elsewhere are the same scene at another time (a fixed camera), not a second copy.
    longer = 1 if (b_stop - b_first, b) > (a_stop - a_first, a) else 0
    taken, kept = set(), []
    for stretch in sorted((s for s in found if s is not None), key=lambda s: (-s.verified, s.difference)):
        rows = {pair[longer] for pair in stretch.pairs}
        if kept and (rows & taken or stretch.verified < max(MIN_REPEAT, kept[0].verified / 2)
                     or stretch.difference > MAX_SINGLE_DIFFERENCE):
            continue
        taken |= rows
        kept.append(stretch)
        if not stretch.verified:
            break  # one unverified stretch says how close the pair came; more say nothing
    return kept


def _stretch_at(offset, a, b, files, spans, x, comparer, checks, pictures=(False, False)):
    """The Stretch of files a and b at `offset` (b's time minus a's), or None where they do not
    overlap; `pictures`: whether each file is one picture (one_picture)."""
    times = files.times
    (a_first, a_stop), (b_first, b_stop) = spans[a], spans[b]
    b_times = times[b_first:b_stop]
    step = max(sampling_step(times[a_first:a_stop]), sampling_step(b_times))
    window, aligned, partners = _aligned_window(offset, times, (a_first, a_stop), (b_first, b_stop), step)
    if not len(window):
        return None
    # placed between the samples first: an exact moment is decoded there, and a sampled frame
    # counts as the one at that moment only if it falls there
    offset = _refined_offset(offset, list(zip(window.tolist(), partners.tolist())), times, (b_first, b_stop), x)
    window, aligned, partners = _aligned_window(offset, times, (a_first, a_stop), (b_first, b_stop), step)
    if not len(window):
        return None
    single = any(pictures)
    checked = np.unique(np.linspace(0, len(window) - 1, min(checks, len(window))).round().astype(int))

    def compared(i):
        moment = min(max(float(aligned[i]), b_times[0]), b_times[-1])  # not past b's ends: no frame there
        off_by = abs(float(times[partners[i]]) - moment) if moment == float(aligned[i]) else None
        # one picture's place is its most similar frames' (sampled): other moments of it show the same
        return comparer.at_moment(int(window[i]), int(partners[i]), b, moment, off_by, decode=not single)

    comparisons, moments = zip(*(compared(i) for i in checked))
    same = [same_picture(comparison, single) for comparison in comparisons]
    run = _longest_run(same)
    while run is not None and not an_instant(comparisons[run[0]:run[1] + 1], moments[run[0]:run[1] + 1]):
        same[run[0]:run[1] + 1] = [False] * (run[1] + 1 - run[0])  # the same scene at another moment
        run = _longest_run(same)
    if run is None:  # no frame pair is the same picture: the closest one, scored as unverified
        closest = int(np.argmin([comparison.difference for comparison in comparisons]))
        run, verified = (closest, closest), 0
        difference = comparisons[closest].difference
    else:
        verified = sum(same[run[0]:run[1] + 1])
        differences = [c.difference for c, ok in zip(comparisons[run[0]:run[1] + 1], same[run[0]:run[1] + 1]) if ok]
        difference = float(min(differences) if single else np.median(differences))
    if single:
        return _one_picture_stretch(a, b, spans, times, pictures, comparisons, same, window[checked], partners[checked],
                                    verified, difference)
    first, last = checked[run[0]], checked[run[1]]
    if verified:  # the run's ends, found between the checks that bound it
        def same_at(i):
            return same_picture(compared(i)[0])

        if run[0] > 0:
            first = _first_true(checked[run[0] - 1], first, same_at)
        if run[1] < len(checked) - 1:
            last = _first_true(checked[run[1] + 1], last, same_at)
    pairs = list(zip(window[first:last + 1].tolist(), partners[first:last + 1].tolist())) if verified else []
    if verified:
        offset = _refined_offset(offset, pairs, times, (b_first, b_stop), x)
    a_start, a_end = float(times[window[first]]), float(times[window[last]])
    return Stretch(a=a, b=b, a_start=a_start, a_stop=a_end, b_start=a_start + offset, b_stop=a_end + offset,
                   verified=verified, checked=len(checked), difference=difference,
                   score=score(verified, len(checked), difference, False), pairs=pairs)


def _one_picture_stretch(a, b, spans, times, pictures, comparisons, same, rows_a, rows_b, verified, difference):
    """The Stretch of a file of one picture (a photo, a still) and another: a copy of the one
    instant of it that verified best, the whole picture's frames showing it (a still's other
    frames face other moments of a moving scene, and count neither way: one pair is checked)."""
    verified = min(verified, 1)
    best = int(np.argmin([c.difference if ok or not verified else np.inf for c, ok in zip(comparisons, same)]))
    sides = [np.arange(*spans[file]) if picture else np.array([int(row)])
             for file, picture, row in ((a, pictures[0], rows_a[best]), (b, pictures[1], rows_b[best]))]
    length = max(map(len, sides))
    pairs = [(int(sides[0][min(i, len(sides[0]) - 1)]), int(sides[1][min(i, len(sides[1]) - 1)]))
             for i in range(length)] if verified else []
    (a_start, a_stop), (b_start, b_stop) = ((float(times[side[0]]), float(times[side[-1]])) for side in sides)
    return Stretch(a=a, b=b, a_start=a_start, a_stop=a_stop, b_start=b_start, b_stop=b_stop, verified=verified,
                   checked=1, difference=difference, single=True, score=score(verified, 1, difference, True),
                   pairs=pairs)


def _aligned_window(offset, times, a_span, b_span, step):
    """(rows of a that fall inside b at `offset`, their times in b, b's nearest rows)."""
    b_times = times[b_span[0]:b_span[1]]
    window = np.arange(*a_span)
    aligned = times[window] + offset
    inside = (aligned >= b_times[0] - step / 2) & (aligned <= b_times[-1] + step / 2)
    window, aligned = window[inside], aligned[inside]
    return window, aligned, b_span[0] + _nearest(b_times, aligned)


def _nearest(sorted_times, targets):
    """Index of the time in `sorted_times` nearest each target."""
    if len(sorted_times) == 1:
        return np.zeros(len(targets), np.int64)
    after = np.clip(np.searchsorted(sorted_times, targets), 1, len(sorted_times) - 1)
    return after - (np.abs(sorted_times[after - 1] - targets) <= np.abs(sorted_times[after] - targets))


def _refined_offset(offset, pairs, times, b_span, x):
    """The offset to a fraction of the sampling step. Sampled frames of two files rarely fall
    at the same instants (another frame rate, another phase), so each frame of a is placed
    between its partner's neighbours in b by a parabola through its three similarities (the
    PCA vectors change smoothly with time); the offset is the median of those placements."""
    placed = []
    for row_a, row_b in pairs:
        if not b_span[0] < row_b < b_span[1] - 1:
            continue
        before, here, after = (float(x[row_a] @ x[row_b + d]) for d in (-1, 0, 1))
        curve = before - 2 * here + after
        if here < max(before, after) or curve >= 0:
            continue  # not a peak: nothing to refine by
        shift = float(np.clip(0.5 * (before - after) / curve, -0.5, 0.5))
        neighbour = times[row_b + 1] if shift > 0 else times[row_b - 1]
        placed.append(times[row_b] + abs(shift) * (neighbour - times[row_b]) - times[row_a])
    return float(np.median(placed)) if placed else offset


def _first_true(false_at, true_at, test):
    """Bisection between an index where `test` failed and one where it held: the index nearest
    `false_at` where it holds (assuming it changes once between them); either direction."""
    while abs(true_at - false_at) > 1:
        middle = (true_at + false_at) // 2
        if test(middle):
            true_at = middle
        else:
            false_at = middle
    return true_at


def _longest_run(flags, gap=1):
    """(first, last) index of the longest run of True that bridges at most `gap` False in a
    row (a frame pair or two blurred by motion inside a copied stretch), or None."""
    best, start, misses = None, None, 0
    for i, flag in enumerate(list(flags) + [False] * (gap + 1)):
        if flag:
            start = i if start is None else start
            last, misses = i, 0
        elif start is not None:
            misses += 1
            if misses > gap:
                if best is None or sum(flags[start:last + 1]) > sum(flags[best[0]:best[1] + 1]):
                    best = (start, last)
                start, misses = None, 0
    return best


def find_stretches(vectors, files, points_of, neighbours=NEIGHBOURS, min_similarity=MIN_SIMILARITY,
                   checks=CHECKS, progress=None, mirrored_points_of=None, exact_points_of=None, threads=None):
    """Every Stretch two files share, best score first. `points_of(row)` gives a frame's
    frame_match.FramePoints (the caller caches them: a frame is compared with several);
    `mirrored_points_of(row)`, those of its mirror image, to find mirrored copies too (only among
    the candidates the features propose: a mirror image is further from its original there than
    most copies); `exact_points_of(file, seconds)`, those of a file's frame at any time, decoded
    from it (None where it cannot be), to compare where sampled frames fall a moment apart
    (frame_match.Comparer.at_moment). Pairs of files are aligned on `threads` threads (default:
    a thread a core; OpenCV lets go of the GIL while it describes and compares frames), so the callables
    must be thread-safe; the result is the same whatever their number (exact moments are asked
    for in the pairs' order)."""
    report = progress or (lambda fraction: None)
    x = unit_rows(vectors)
    rows_a, rows_b, similarities = candidate_matches(x, files, neighbours, min_similarity,
                                                     progress=lambda f: report(0.3 * f))
    if not len(rows_a):
        report(1.0)
        return []  # one file, or nothing alike
    spans = files.spans
    file_a, file_b = files.sources[rows_a], files.sources[rows_b]
    order = np.lexsort((rows_b, rows_a, file_b, file_a))
    keys = np.stack([file_a[order], file_b[order]], axis=1)
    bounds = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1), True])
    turns = InOrder()  # exact moments are read in the pairs' order: the budget leaves out the same ones
    pictures = {file: one_picture(x, span) for file, span in spans.items()}  # once a file, not once a pair

    def aligned(number):
        picked = order[bounds[number]:bounds[number + 1]]
        a, b = int(file_a[picked[0]]), int(file_b[picked[0]])
        comparer = Comparer(points_of, mirrored_points_of, exact_points_of and turns.in_turn(number, exact_points_of))
        try:
            return align_pair(a, b, rows_a[picked], rows_b[picked], similarities[picked], files, spans, x, comparer,
                              checks, pictures)
        finally:
            turns.finished(number)

    stretches = []
    pool = ThreadPoolExecutor(threads or os.cpu_count())
    try:  # in order, so the result does not depend on the threads; progress is reported here
        for number, found in enumerate(pool.map(aligned, range(len(bounds) - 1))):
            stretches += found
            report(0.3 + 0.7 * (number + 1) / (len(bounds) - 1))
    finally:  # a cancelled job (progress raises) does not wait for the pairs not yet begun
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(stretches, key=lambda s: -s.score)
