"""The neighbour graph the map is trained to keep: UMAP's fuzzy graph of the PCA vectors.

Computed once per training, before the first step:
  1. each frame's `k` nearest neighbours, with the faiss index of similar-clip search
     (exact up to its `exact_limit`, an inverted file above), queried in batches so a
     memmap is never loaded whole; a few more candidates than k are re-ranked by exact
     distance, ties by row among them, so the neighbours do not hang on the index's rounding;
  2. UMAP's memberships (McInnes et al., 2018, section 3): from frame i, the neighbour at
     distance d weighs exp(-(d - rho_i) / sigma_i), where rho_i is the distance to its
     nearest other frame and sigma_i is set by bisection so the weights of its k
     neighbours add up to log2(k + 1), as UMAP's with n_neighbors = k + 1 (UMAP counts the
     frame itself). A frame in a dense region and one in a sparse region thus both have a
     few strong edges: the graph adapts to the local density;
  3. the two directions joined as a fuzzy union, w = w_ij + w_ji - w_ij * w_ji, without the
     edges between identical frames: the frames of a still video have one code whatever
     the training, so their edges would only take the steps away from the rest.

Memory: the index holds a copy of the vectors while the graph is built (float32 below
`exact_limit` frames, so at most 51 MB; 8 bits a dimension above, 256 bytes a frame), the
re-ranking of a batch of 1,024 queries about 22 MB, and the graph about 2 k edges a frame
(two int32 ends, a float32 weight and a float64 cumulative weight: 20 bytes an edge, 400
bytes a frame at k = 10), freed after training.
Time: the exact search grows with n^2 and the inverted file's with about n^1.5 (100,000
frames: 7 s on 2 cores). Training samples edges in proportion to their weight
(`EdgeSampler`), and `curve_parameters` gives the 2D similarity curve that UMAP fits to
its `min_dist`.
"""
import numpy as np

from workers.pipeline.neighbours import NeighbourIndex

BISECTION_STEPS = 64


def nearest_neighbours(vectors, k, batch_size=1024, progress=None):
    """(distances, indices), each (n, k): every row's k nearest other rows, nearest first
    (ties among faiss's candidates by row), with exact Euclidean distances. Needs at least
    k + 1 rows; progress(fraction)."""
    n = len(vectors)
    if k < 1 or k >= n:
        raise ValueError(f"the neighbour graph needs at least 1 neighbour a frame and a frame more than "
                         f"its {k} neighbours: got {n} frame(s)")
    index = NeighbourIndex().fit(vectors, batch_size=batch_size,
                                 progress=(lambda done: progress(0.5 * done)) if progress else None)
    candidates = min(n, 2 * k + 1 if not index.is_exact else k + 6)  # a few more, re-ranked below
    distances = np.empty((n, k), dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, batch_size):
        rows = np.asarray(vectors[start:start + batch_size], dtype=np.float32)
        _, found = index.search(rows, candidates)
        own = np.arange(start, start + len(rows))[:, None]
        # The row itself is not its own neighbour (with repeated frames it need not come first);
        # a slot faiss left empty (-1) is pushed to the end by an infinite distance.
        exact = np.sqrt(np.sum((np.asarray(vectors[np.maximum(found, 0).ravel()], dtype=np.float32).reshape(
            *found.shape, -1) - rows[:, None, :]) ** 2, axis=2))
        exact[(found == own) | (found < 0)] = np.inf
        order = np.lexsort((found, exact), axis=1)[:, :k]  # by distance, then by row
        distances[start:start + len(rows)] = np.take_along_axis(exact, order, axis=1)
        indices[start:start + len(rows)] = np.take_along_axis(found, order, axis=1)
        if progress:
            progress(0.5 + 0.5 * min(1.0, (start + batch_size) / n))
    if not np.all(np.isfinite(distances)):
        raise RuntimeError("the neighbour index returned fewer neighbours than asked for")
    return distances, indices


def memberships(distances):
    """UMAP's directed edge weights (n, k) in (0, 1] for each row's neighbours at `distances`."""
    distances = np.asarray(distances, dtype=np.float64)
    n, k = distances.shape
    positive = np.where(distances > 0, distances, np.inf)
    rho = np.min(positive, axis=1)
    rho[~np.isfinite(rho)] = 0.0  # every neighbour a repeat of this frame
    gaps = np.maximum(distances - rho[:, None], 0.0)
    target = np.log2(k + 1)
    low, high, sigma = np.zeros(n), np.full(n, np.inf), np.ones(n)
    for _ in range(BISECTION_STEPS):
        heavy = np.exp(-gaps / sigma[:, None]).sum(axis=1) > target  # too wide: narrow it
        high = np.where(heavy, sigma, high)
        low = np.where(heavy, low, sigma)
        sigma = np.where(np.isinf(high), sigma * 2.0, (low + high) / 2.0)
    # As UMAP does, a floor keeps a frame whose neighbours are all at one distance finite.
    sigma = np.maximum(sigma, 1e-3 * np.maximum(distances.mean(axis=1), 1e-12))
    return np.exp(-gaps / sigma[:, None])


def fuzzy_graph(distances, indices):
    """The symmetric graph as (head, tail, weight) arrays (int32, int32, float32), each edge
    in both directions; none between identical frames, so a collection of one repeated
    frame has no edges."""
    from scipy import sparse

    n, k = indices.shape
    weights = np.where(np.asarray(distances) > 0, memberships(distances), 0.0)
    directed = sparse.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), indices.ravel())), shape=(n, n))
    joined = (directed + directed.T - directed.multiply(directed.T)).tocoo()
    keep = joined.data > 0
    return joined.row[keep].astype(np.int32), joined.col[keep].astype(np.int32), joined.data[keep].astype(np.float32)


class EdgeSampler:
    """Draws edges with probability proportional to their weight (a cumulative sum and a
    binary search: O(log edges) per draw, the weights read once)."""

    def __init__(self, head, tail, weight):
        self.head, self.tail = head, tail
        self.total = float(np.sum(weight))
        self._cumulative = np.cumsum(weight, dtype=np.float64)

    def draw(self, rng, count):
        """(heads, tails): `count` edges drawn with replacement."""
        picked = np.searchsorted(self._cumulative, rng.random(count) * self._cumulative[-1], side="right")
        picked = np.minimum(picked, len(self._cumulative) - 1)
        return self.head[picked], self.tail[picked]


def curve_parameters(min_dist, spread=1.0):
    """UMAP's (a, b): the curve 1 / (1 + a d^(2b)) closest to 1 below `min_dist` and to
    exp(-(d - min_dist) / spread) above it, by least squares (min_dist 0.1: a 1.58, b 0.90)."""
    from scipy.optimize import curve_fit

    d = np.linspace(0.0, 3.0 * spread, 300)
    target = np.where(d < min_dist, 1.0, np.exp(-(d - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2.0 * b)), d, target, p0=(1.0, 1.0))
    return float(a), float(b)
