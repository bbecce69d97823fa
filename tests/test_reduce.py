"""The streaming PCA: exact, whatever the batches, and padded for small collections."""
import numpy as np
import pytest
from sklearn.decomposition import PCA

from workers.pipeline.reduce import StreamingPCA, blocks_of


def low_rank(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 20)) @ rng.normal(size=(20, 300)) + 0.1 * rng.normal(size=(n, 300))).astype(
        np.float32) + 5.0


def test_matches_scikit_learns_exact_pca_from_batches(tmp_path):
    data = low_rank(2000)
    streamed = StreamingPCA(16).fit((data[i:i + 333] for i in range(0, 2000, 333)), 2000)
    exact = PCA(16).fit(data)
    assert streamed.explained_variance_ == pytest.approx(exact.explained_variance_ratio_.sum(), abs=1e-4)
    # Same components up to sign: projections agree column by column.
    ours, theirs = streamed.transform(data), exact.transform(data)
    correlation = [abs(np.corrcoef(ours[:, k], theirs[:, k])[0, 1]) for k in range(16)]
    assert min(correlation) > 0.999
    # Batching does not change the result.
    whole = StreamingPCA(16).fit([data], 2000)
    assert np.allclose(whole.transform(data[:50]), streamed.transform(data[:50]), atol=1e-3)


def test_fewer_frames_than_components_are_padded_with_zero_columns(tmp_path):
    data = low_rank(40)
    pca = StreamingPCA(256).fit([data], 40)
    assert pca.n_fitted_components_ == 39
    projected = pca.transform(data)
    assert projected.shape == (40, 256) and np.all(projected[:, 39:] == 0)
    pca.save(tmp_path / "pca.npz")
    again = StreamingPCA.load(tmp_path / "pca.npz")
    assert np.array_equal(again.transform(data), projected)


def test_few_frames_decomposed_through_their_gram_matrix_give_the_streamed_pca(monkeypatch):
    from workers.pipeline import reduce

    data = low_rank(300, seed=3)
    few = StreamingPCA(32).fit([data[:100], data[100:]], 300)  # one block: the Gram matrix
    monkeypatch.setattr(reduce, "BLOCK_ROWS", 64)  # many blocks: X^T X
    streamed = StreamingPCA(32).fit([data[:100], data[100:]], 300)
    assert few.n_fitted_components_ == streamed.n_fitted_components_ == 32
    assert np.allclose(few.mean_, streamed.mean_, atol=1e-5)
    assert np.allclose(few.explained_variance_ratio_, streamed.explained_variance_ratio_, atol=1e-5)
    # The same components, signs included; the weakest are the least determined, so compare the top 20.
    assert np.allclose(few.components_[:20], streamed.components_[:20], atol=1e-3)
    assert np.allclose(few.transform(data)[:, :20], streamed.transform(data)[:, :20], atol=1e-2)


def test_repeated_frames_give_only_the_components_they_have():
    data = np.repeat(low_rank(40, seed=4), 8, axis=0)  # 320 frames, 40 distinct
    pca = StreamingPCA(256).fit([data], len(data))
    assert pca.n_fitted_components_ <= 39
    assert np.allclose(np.linalg.norm(pca.components_, axis=1), 1.0, atol=1e-4)  # every kept one a direction
    projected = pca.transform(data)
    assert projected.shape == (320, 256) and np.isfinite(projected).all()


def test_blocks_hold_exactly_their_rows_across_batches():
    """Blocks start at the same rows whatever comes after: the embed stage projects the old
    frames of a collection in the same products when new frames are appended."""
    batches = [np.arange(300 * 2).reshape(300, 2), np.zeros((0, 2)), np.arange(900 * 2).reshape(900, 2) + 1e4]
    blocks = list(blocks_of(batches, 256))
    assert [len(block) for block in blocks] == [256] * 4 + [176]
    assert np.array_equal(np.concatenate(blocks), np.concatenate(batches))
    assert all(block.dtype == np.float64 for block in blocks)
