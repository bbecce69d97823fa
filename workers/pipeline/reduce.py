"""Stage 3, pca: 4096 -> 256 dimensions, fitted incrementally.

Batches stream in from the per-source feature arrays, so memory depends on the
batch size, not on the collection. The output always has `n_components` columns:
a collection with fewer frames than that gets zero columns at the end (they carry
no variance), so every later stage sees the same width.
"""
import io
import os
import uuid
from pathlib import Path

import numpy as np


class StreamingPCA:
    """Incremental PCA with the scikit-learn contract: parameters here, fit, learned `*_`."""

    def __init__(self, n_components=256, batch_rows=2048):
        self.n_components = n_components
        self.batch_rows = batch_rows

    def fit(self, batches, n_rows, progress=None):
        """Fit on an iterable of (rows, features) arrays holding `n_rows` rows in all."""
        from sklearn.decomposition import IncrementalPCA

        if n_rows < 2:
            raise ValueError(f"PCA needs at least 2 frames, got {n_rows}")
        batches = iter(batches)
        first = np.asarray(next(batches), dtype=np.float32)
        n_features = first.shape[1]
        self.n_fitted_components_ = min(self.n_components, n_rows, n_features)
        pca = IncrementalPCA(n_components=self.n_fitted_components_)
        # Every partial_fit needs at least n_components rows: regroup into batches that big.
        size = max(self.batch_rows, self.n_fitted_components_)
        done = 0
        for batch in _regroup(_chain(first, batches), size):
            if len(batch) < self.n_fitted_components_:
                continue  # a small remainder after full batches: negligible for the fit
            pca.partial_fit(batch)
            done += len(batch)
            if progress:
                progress(min(1.0, done / n_rows))
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_.astype(np.float32)
        self.n_features_in_ = n_features
        return self

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


def _chain(first, rest):
    yield first
    for batch in rest:
        yield np.asarray(batch, dtype=np.float32)


def _regroup(batches, size):
    """Re-cut a stream of row batches into batches of `size` rows (the last may be smaller)."""
    pending, count = [], 0
    for batch in batches:
        pending.append(batch)
        count += len(batch)
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            rest = joined[size:]
            pending, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield np.concatenate(pending)
