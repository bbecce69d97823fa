"""Stage 3, pca: 4096 -> 256 dimensions, fitted in one streaming pass.

Batches stream in from the per-source feature arrays; the fit keeps only the sum of
the rows and the sum of their outer products (X^T X) in float64, 128 MB for 4096
features however many frames there are, then takes the top eigenvectors of the
covariance once. That is exact PCA, and about 20 times faster than scikit-learn's
IncrementalPCA, which runs an SVD per batch (measured at 100k frames by
tests/benchmarks/bench_embedding.py). A collection of at most BLOCK_ROWS frames is
decomposed through its Gram matrix instead: the same PCA, in a fraction of the time of
the 4096 x 4096 covariance's eigenpairs (0.2 s instead of 3 s for 300 photos). The output
always has `n_components` columns: a collection with fewer frames than that gets zero
columns at the end (they carry no variance), so every later stage sees the same width.
"""
import io
import os
import uuid
from pathlib import Path

import numpy as np


# Rows gathered before each update of X^T X: one 4096x4096 update costs about as much for
# one row as for hundreds (a folder of photos streams in as batches of one frame each).
BLOCK_ROWS = 1024


def blocks_of(batches, rows):
    """The rows of `batches`, as float64 blocks of `rows` rows (the last may be shorter)."""
    pending, held = [], 0
    for batch in batches:
        batch = np.asarray(batch, dtype=np.float64)
        while len(batch):
            take = batch[:rows - held]
            pending.append(take)
            held += len(take)
            batch = batch[len(take):]
            if held == rows:
                yield np.concatenate(pending)
                pending, held = [], 0
    if pending:
        yield np.concatenate(pending)


class StreamingPCA:
    """Exact PCA from one pass over batches, with the scikit-learn contract: parameters
    here, work in fit, learned state in attributes ending in `_`."""

    def __init__(self, n_components=256):
        self.n_components = n_components

    def fit(self, batches, n_rows, progress=None):
        """Fit on an iterable of (rows, features) arrays holding `n_rows` rows in all."""
        if n_rows < 2:
            raise ValueError(f"PCA needs at least 2 frames, got {n_rows}")
        if n_rows <= BLOCK_ROWS:  # few frames: decompose them, not X^T X
            self._fit_few(np.concatenate([np.asarray(batch, dtype=np.float64) for batch in batches]))
        else:
            self._fit_streamed(blocks_of(batches, BLOCK_ROWS), n_rows, progress)
        if progress:
            progress(1.0)
        return self

    def _fit_streamed(self, blocks, n_rows, progress):
        total, outer, seen = None, None, 0
        for batch in blocks:
            if total is None:
                total = np.zeros(batch.shape[1])
                outer = np.zeros((batch.shape[1], batch.shape[1]))
            total += batch.sum(axis=0)
            outer += batch.T @ batch
            seen += len(batch)
            if progress:
                progress(min(0.99, seen / n_rows))
        mean = total / seen
        covariance = (outer - seen * np.outer(mean, mean)) / max(seen - 1, 1)
        fitted = min(self.n_components, seen - 1, len(mean))
        # Only the top eigenpairs (LAPACK's evr): about twice as fast as all 4096 of them.
        from scipy.linalg import eigh

        dim = len(mean)
        variances, vectors = eigh(covariance, subset_by_index=[dim - fitted, dim - 1], driver="evr")
        # The total variance is the covariance's trace: no need for the other eigenvalues.
        self._keep(mean, variances, vectors.T, float(np.trace(covariance)))

    def _fit_few(self, rows):
        """The same PCA from the rows' Gram matrix (n x n): with n well below the 4096
        features, its eigenpairs cost a fraction of the covariance's (4096 x 4096)."""
        from scipy.linalg import eigh

        mean = rows.mean(axis=0)
        centred = rows - mean
        n = len(rows)
        fitted = min(self.n_components, n - 1, rows.shape[1])
        gram = centred @ centred.T
        scales, vectors = eigh(gram, subset_by_index=[n - fitted, n - 1], driver="evr")
        # Directions of no variance (repeated frames) have no eigenvector to speak of: keep
        # those that stand above rounding, and let transform() pad the rest with zeros.
        real = scales > max(scales.max(initial=0.0), 1e-300) * n * np.finfo(np.float64).eps
        scales, vectors = scales[real], vectors[:, real]
        # An eigenvector u of X X^T gives X^T u / sqrt(lambda), the unit eigenvector of X^T X.
        components = (centred.T @ vectors / np.sqrt(scales)).T
        self._keep(mean, scales / max(n - 1, 1), components, float(np.trace(gram)) / max(n - 1, 1))

    def _keep(self, mean, variances, components, total_variance):
        """The learned state from eigenpairs in any order (rows of `components`)."""
        top = np.argsort(variances)[::-1]
        components = components[top]
        # A deterministic sign per component (as scikit-learn does): the same data, the same map.
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        self.n_fitted_components_ = len(components)
        self.components_ = (components * signs[:, None]).astype(np.float32)
        self.mean_ = mean.astype(np.float32)
        self.explained_variance_ratio_ = (np.clip(variances[top], 0, None)
                                          / max(total_variance, 1e-12)).astype(np.float32)
        self.n_features_in_ = len(mean)

    @property
    def explained_variance_(self):
        """Fraction of the variance the kept components explain (the article kept ~75%)."""
        return float(self.explained_variance_ratio_.sum())

    def transform(self, features):
        """(rows, n_features) -> (rows, n_components) float32, zero-padded if fewer were fitted."""
        projected = (np.asarray(features, dtype=np.float32) - self.mean_) @ self.components_.T
        if projected.shape[1] < self.n_components:
            projected = np.pad(projected, ((0, 0), (0, self.n_components - projected.shape[1])))
        return projected

    def save(self, path):
        """Write the learned state to `path` (.npz), atomically."""
        path = Path(path)
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean_, components=self.components_,
                 explained_variance_ratio=self.explained_variance_ratio_,
                 n_components=np.int64(self.n_components))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            pca = cls(n_components=int(data["n_components"]))
            pca.mean_ = data["mean"]
            pca.components_ = data["components"]
            pca.explained_variance_ratio_ = data["explained_variance_ratio"]
        pca.n_fitted_components_ = len(pca.components_)
        pca.n_features_in_ = pca.components_.shape[1]
        return pca


