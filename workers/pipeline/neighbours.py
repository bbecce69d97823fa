"""The neighbour index on the 256-d PCA vectors, with faiss.

Small maps get an exact index (IndexFlatL2). From `exact_limit` frames on, an inverted
file over sqrt(n) k-means lists with 8-bit scalar-quantised vectors (IndexIVFScalarQuantizer):
a query scans only `nprobe` lists, so its cost grows with about sqrt(n) instead of n, and
the index takes a quarter of the vectors' memory. Its approximate distances only choose
candidates; callers re-rank them with the exact vectors.
"""
import math

import numpy as np


class NeighbourIndex:
    """scikit-learn contract: parameters here, `fit` builds `index_`."""

    def __init__(self, exact_limit=50_000, nprobe=16, train_size=65_536, seed=0):
        self.exact_limit, self.nprobe, self.train_size, self.seed = exact_limit, nprobe, train_size, seed

    def fit(self, vectors, batch_size=65_536, progress=None):
        """Index the rows of `vectors` (n, d), read in batches so a memmap is never loaded whole."""
        import faiss

        n, dims = vectors.shape
        if n == 0:
            raise ValueError("cannot index zero vectors")
        if n < self.exact_limit:
            index = faiss.IndexFlatL2(dims)
        else:
            lists = int(math.sqrt(n))
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(dims), dims, lists,
                                                  faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
            sample = np.sort(np.random.default_rng(self.seed).choice(n, min(n, self.train_size), replace=False))
            index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
            index.nprobe = self.nprobe
        for start in range(0, n, batch_size):
            index.add(np.ascontiguousarray(vectors[start:start + batch_size], dtype=np.float32))
            if progress:
                progress(min(1.0, (start + batch_size) / n))
        self.index_ = index
        return self

    @property
    def is_exact(self):
        """Whether the fitted index compares every vector (below `exact_limit`)."""
        return not hasattr(self.index_, "nprobe")

    def search(self, queries, k, excluding=None):
        """(distances, rows) of the k nearest indexed vectors to each query, nearest first;
        squared L2 distances, rows -1 where fewer than k exist. `excluding` (first, stop):
        rows never returned (a file's own frames, when looking for other files')."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, self.index_.ntotal)
        if excluding is None:
            return self.index_.search(queries, k)
        if self.is_exact:
            return self._exact_search_excluding(queries, k, *excluding)
        selector = faiss.IDSelectorNot(faiss.IDSelectorRange(int(excluding[0]), int(excluding[1])))
        return self.index_.search(queries, k, params=faiss.SearchParametersIVF(sel=selector,
                                                                              nprobe=self.index_.nprobe))

    def _exact_search_excluding(self, queries, k, first, stop):
        # faiss's flat index checks a selector vector by vector, outside its matrix product
        # (the copies' candidate search took twice as long at 20,000 frames); the product
        # itself, with the excluded columns set to infinity, gives the same answer at BLAS
        # speed (a batch of 512 queries below the 50,000-row limit: at most 100 MB).
        if not hasattr(self, "vectors_"):
            self.vectors_ = self.index_.reconstruct_n(0, self.index_.ntotal)
            self.norms_ = np.einsum("nd,nd->n", self.vectors_, self.vectors_)
        distances = (np.einsum("qd,qd->q", queries, queries)[:, None] - 2.0 * queries @ self.vectors_.T
                     + self.norms_[None, :])
        np.maximum(distances, 0.0, out=distances)
        distances[:, first:stop] = np.inf
        found = min(k, len(self.vectors_) - max(0, min(stop, len(self.vectors_)) - max(first, 0)))
        rows = np.full((len(queries), k), -1, np.int64)
        nearest = np.full((len(queries), k), np.finfo(np.float32).max, np.float32)
        if found > 0:
            part = np.argpartition(distances, found - 1, axis=1)[:, :found]
            order = np.argsort(np.take_along_axis(distances, part, axis=1), axis=1, kind="stable")
            rows[:, :found] = np.take_along_axis(part, order, axis=1)
            nearest[:, :found] = np.take_along_axis(distances, rows[:, :found], axis=1)
        return nearest, rows

    def save(self, path):
        import faiss

        faiss.write_index(self.index_, str(path))

    @classmethod
    def load(cls, path, nprobe=16):
        import faiss

        neighbours = cls(nprobe=nprobe)
        neighbours.index_ = faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY)
        if hasattr(neighbours.index_, "nprobe"):
            faiss.extract_index_ivf(neighbours.index_).nprobe = nprobe
        return neighbours
