"""Clips: stretches of a video around a moment, the most similar clips anywhere in the
collection, and the clips most different from each other.

Map rows are grouped by source and in time order within a source (the order the pca
stage writes them), so a clip is a range of rows.

Similar clips are found in the 256-d PCA space, not on the 2D path that the article used
as a fingerprint: the 2D map squeezes distinct scenes together (see README's quality
figures: 10-NN accuracy 0.86 in 256-d, 0.79 in 2D), and a path of a few points says
little. The search is temporal voting, as in near-duplicate video retrieval:
1. every frame of the query clip asks the neighbour index for its nearest frames;
2. each hit votes for a (video, time offset) alignment: where the query would start in
   that video if the two clips ran side by side;
3. the best-voted alignments are re-ranked by how closely their sequence of embeddings
   follows the query's: for each query frame, the frame of the candidate video at the
   same offset, and the mean 256-d distance of those pairs (a frame missing at that time
   counts as a typical distance). score = 1 - mean distance / typical distance between
   two random frames, so 1 is identical and 0 is no closer than chance;
4. overlapping alignments in one video keep only the best, and the query's own stretch
   of its own video is left out.
The cost is the index lookups plus a few hundred vector reads, whatever the collection size.
"""
import numpy as np


class Spans:
    """Where each source's rows are: sources sorted, with their first row and row count."""

    def __init__(self, sources, starts, counts):
        self.sources, self.starts, self.counts = (np.asarray(a, dtype=np.int64) for a in (sources, starts, counts))

    @classmethod
    def from_sources(cls, row_sources):
        row_sources = np.asarray(row_sources)
        if len(row_sources) == 0:
            return cls([], [], [])
        change = np.flatnonzero(row_sources[1:] != row_sources[:-1]) + 1
        starts = np.concatenate([[0], change])
        counts = np.diff(np.concatenate([starts, [len(row_sources)]]))
        sources = row_sources[starts]
        if len(np.unique(sources)) != len(sources):
            raise ValueError("map rows of a source must be contiguous")
        order = np.argsort(sources)
        return cls(sources[order], starts[order], counts[order])

    def rows(self, source):
        """(first row, stop row) of a source, or None when it is not on the map."""
        position = np.searchsorted(self.sources, source)
        if position >= len(self.sources) or self.sources[position] != source:
            return None
        start = int(self.starts[position])
        return start, start + int(self.counts[position])


def clip_around(times, start, stop, centre, seconds):
    """Rows [lo, hi) of the source rows [start, stop) within seconds/2 of `centre`."""
    source_times = np.asarray(times[start:stop])
    lo = int(np.searchsorted(source_times, centre - seconds / 2, side="left"))
    hi = int(np.searchsorted(source_times, centre + seconds / 2, side="right"))
    return start + lo, start + max(hi, lo + 1)


def typical_distance(vectors, samples=4096, seed=0):
    """Median 256-d distance between two random frames: the yardstick for scores."""
    n = len(vectors)
    if n < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, samples), rng.integers(0, n, samples)
    keep = a != b
    if not keep.any():
        return 1.0
    first = np.asarray(vectors[a[keep]], np.float32)
    second = np.asarray(vectors[b[keep]], np.float32)
    return float(np.median(np.linalg.norm(first - second, axis=1))) or 1.0


def similar_clips(query, sources, times, vectors, spans, neighbours, typical, seconds, top=10,
                  per_frame=64, other_sources_only=False):
    """The `top` clips most like the query rows [start, stop): a list of dicts with
    source, offset (seconds to add to a query time to land in that clip), rows
    (the matched frames, in time order) and score, best first. With
    `other_sources_only`, none of the query's own source (its video), not only its own
    stretch."""
    start, stop = query
    query_rows = np.arange(start, stop)
    query_vectors = np.asarray(vectors[start:stop], dtype=np.float32)
    query_times = np.asarray(times[start:stop], dtype=np.float64)
    query_source = int(sources[start])
    interval = float(np.median(np.diff(query_times))) if len(query_rows) > 1 else seconds

    _, hits = neighbours.search(query_vectors, per_frame)
    valid = hits >= 0
    hit_rows = hits[valid]
    # A vote counts more the nearer its hit: 1 for a frame's nearest, 1/2 for the next...
    weights = np.broadcast_to(1.0 / np.arange(1, hits.shape[1] + 1), hits.shape)[valid]
    hit_sources, hit_times = np.asarray(sources[hit_rows]), np.asarray(times[hit_rows], dtype=np.float64)
    offsets = hit_times - np.broadcast_to(query_times[:, None], hits.shape)[valid]
    own = (hit_sources == query_source) & (other_sources_only | (np.abs(offsets) < max(seconds, interval)))
    hit_sources, offsets, weights = hit_sources[~own], offsets[~own], weights[~own]
    if len(offsets) == 0:
        return []

    # Votes per (video, offset bin); the best-voted alignments go on to re-ranking.
    bin_width = max(seconds / 2, interval, 1e-3)
    keys = np.stack([hit_sources, np.round(offsets / bin_width).astype(np.int64)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    votes = np.bincount(inverse, weights=weights)
    candidates = np.argsort(-votes, kind="stable")[:3 * top + 5]

    ranked = []
    for candidate in candidates:
        source = int(unique[candidate, 0])
        # The exact offsets voted for most in this bin (frames near in time are near in
        # space too, so votes scatter around the true alignment): keep the best-following.
        in_bin = inverse == candidate
        exact, which = np.unique(np.round(offsets[in_bin], 3), return_inverse=True)
        exact_votes = np.bincount(which.reshape(-1), weights=weights[in_bin])
        best = None
        for offset in exact[np.argsort(-exact_votes, kind="stable")[:5]]:
            rows, score = _follow(query_vectors, query_times + offset, source, times, vectors, spans,
                                  typical, tolerance=max(interval, 1e-3))
            if rows and (best is None or score > best["score"]):
                best = {"source": source, "offset": float(offset), "rows": rows, "score": score}
        if best:
            ranked.append(best)
    ranked.sort(key=lambda clip: -clip["score"])
    chosen = []
    for clip in ranked:
        if any(c["source"] == clip["source"] and abs(c["offset"] - clip["offset"]) < seconds for c in chosen):
            continue
        chosen.append(clip)
        if len(chosen) == top:
            break
    return chosen


def _follow(query_vectors, targets, source, times, vectors, spans, typical, tolerance):
    """Match each query frame with the frame of `source` nearest its target time; the
    matched rows and the score of the whole sequence."""
    span = spans.rows(source)
    if span is None:
        return [], 0.0
    start, stop = span
    source_times = np.asarray(times[start:stop], dtype=np.float64)
    position = np.clip(np.searchsorted(source_times, targets), 1, max(len(source_times) - 1, 1))
    before = np.maximum(position - 1, 0)
    position = np.minimum(position, len(source_times) - 1)
    nearest = np.where(np.abs(source_times[before] - targets) <= np.abs(source_times[position] - targets),
                       before, position)
    present = np.abs(source_times[nearest] - targets) <= tolerance
    if not present.any():
        return [], 0.0
    matched = start + nearest[present]
    distances = np.full(len(targets), typical, dtype=np.float64)
    distances[present] = np.linalg.norm(np.asarray(vectors[matched], np.float32) - query_vectors[present], axis=1)
    score = max(0.0, 1.0 - float(np.mean(np.minimum(distances, typical))) / typical)
    return sorted(set(int(r) for r in matched)), score


def clip_windows(sources, times, seconds):
    """Every source cut into consecutive clips of `seconds`: a (start row, stop row) per clip."""
    sources, times = np.asarray(sources), np.asarray(times, dtype=np.float64)
    if len(sources) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    window = np.floor(times / seconds).astype(np.int64)
    change = np.flatnonzero((sources[1:] != sources[:-1]) | (window[1:] != window[:-1])) + 1
    starts = np.concatenate([[0], change])
    return np.stack([starts, np.concatenate([change, [len(sources)]])], axis=1)


def most_dissimilar_clips(windows, vectors, count, batch_rows=65_536):
    """`count` clips as different from each other as possible: each clip is the mean of its
    vectors, and farthest-point sampling picks the clip farthest from the collection's mean,
    then again and again the clip farthest from all those picked. Returns indexes into
    `windows`. Vectors are read in batches, so memory stays bounded."""
    n_windows = len(windows)
    if n_windows == 0:
        return []
    window_of_row = np.repeat(np.arange(n_windows), windows[:, 1] - windows[:, 0])
    sums = np.zeros((n_windows, vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(window_of_row), batch_rows):
        ids = window_of_row[start:start + batch_rows]
        first = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
        sums[ids[first]] += np.add.reduceat(np.asarray(vectors[start:start + batch_rows], np.float64), first, axis=0)
    means = sums / (windows[:, 1] - windows[:, 0])[:, None]
    picked = [int(np.argmax(np.linalg.norm(means - means.mean(axis=0), axis=1)))]
    nearest = np.linalg.norm(means - means[picked[0]], axis=1)
    while len(picked) < min(count, n_windows):
        picked.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(means - means[picked[-1]], axis=1))
    return picked
