"""The neighbour graph the map keeps and the graph term that keeps it (workers/pipeline/
neighbour_graph.py, map_losses.graph_cross_entropy), and what the default autoencoder
does with them: properties on fixed inputs, which hold on every CPU."""
import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from tests.media import generated_videos
from tests.test_autoencoder import clustered, descend, random_codes, rolled_sheet
from workers.pipeline.autoencoder import TripletAutoencoder
from workers.pipeline.neighbour_graph import (
    EdgeSampler, curve_parameters, fuzzy_graph, memberships, nearest_neighbours,
)


def brute_force_neighbours(x, k):
    squared = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(axis=-1)
    np.fill_diagonal(squared, np.inf)  # a row is not its own neighbour
    order = np.argsort(squared, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(squared, order, axis=1)), order


def test_nearest_neighbours_are_exact_and_never_the_row_itself():
    x = clustered(400)
    distances, indices = nearest_neighbours(x, 10, batch_size=64)  # several query batches
    expected_distances, expected = brute_force_neighbours(x, 10)
    assert indices.shape == distances.shape == (400, 10)
    assert not np.any(indices == np.arange(400)[:, None])
    assert np.mean([len(set(a) & set(b)) for a, b in zip(indices, expected)]) > 9.9  # ties may swap
    assert np.allclose(distances, expected_distances, rtol=1e-3)
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_repeated_frames_are_each_others_neighbours_and_get_finite_weights():
    """A still video: many identical rows. None is its own neighbour, and the weights stay finite."""
    x = np.concatenate([np.repeat(clustered(1)[:1], 30, axis=0), clustered(100)])
    distances, indices = nearest_neighbours(x, 10)
    assert not np.any(indices == np.arange(len(x))[:, None])
    assert np.all(indices[:30] < 30) and np.all(distances[:30] == 0)
    weights = memberships(distances)
    assert np.all(np.isfinite(weights)) and np.all(weights[:30] == 1.0)
    head, tail, _ = fuzzy_graph(distances, indices)
    assert not np.any((head < 30) & (tail < 30))  # no edge between copies: they teach nothing
    assert np.any((head < 30) & (tail >= 30))  # the still video stays tied to its look-alikes


def test_a_collection_of_one_repeated_frame_trains_without_a_graph():
    x = np.repeat(clustered(1)[:1], 40, axis=0)
    assert len(fuzzy_graph(*nearest_neighbours(x, 10))[0]) == 0
    model = TripletAutoencoder(epochs=2).fit(x)
    codes = model.transform(x)
    assert np.all(np.isfinite(codes)) and np.all(codes == codes[0])
    assert np.all(np.isfinite(model.history_["loss"])) and model.history_["attraction"] == [0.0, 0.0]


def test_the_approximate_index_above_its_limit_still_finds_most_neighbours(monkeypatch):
    from workers.pipeline import neighbours

    x = clustered(3000)
    exact = nearest_neighbours(x, 10)[1]
    monkeypatch.setattr(neighbours.NeighbourIndex.__init__, "__defaults__", (1000, 16, 65_536, 0))
    approximate_distances, approximate = nearest_neighbours(x, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate, exact)])
    assert recall > 0.8  # 16 of 54 lists probed; the candidates are re-ranked exactly
    assert np.allclose(approximate_distances, np.sqrt(((x[:, None] - x[approximate]) ** 2).sum(-1)), rtol=1e-3)


def test_memberships_are_umaps():
    distances = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 5.0]])
    weights = memberships(distances)
    assert np.allclose(weights[:, 0], 1.0)  # the nearest neighbour: weight 1 (rho)
    # sigma set by bisection: 4 neighbours weigh log2(4 + 1), as UMAP's n_neighbors=5 (it counts the frame)
    assert weights[0].sum() == pytest.approx(np.log2(5), rel=1e-6)
    assert np.all(np.diff(weights[0]) < 0)  # farther, lighter
    # Three neighbours tied nearest already weigh more than log2(4): sigma shrinks to its floor.
    assert np.allclose(weights[1], [1, 1, 1, 0], atol=1e-6)


def test_the_fuzzy_union_is_symmetric_and_joins_both_directions():
    distances, indices = nearest_neighbours(clustered(200), 5)
    head, tail, weight = fuzzy_graph(distances, indices)
    edges = dict(zip(zip(head.tolist(), tail.tolist()), weight))
    assert all(edges[(j, i)] == pytest.approx(w) for (i, j), w in edges.items())
    directed = memberships(distances)
    i, slot = 7, 2
    j = indices[i, slot]
    back = directed[j][indices[j] == i]
    w_ji = back[0] if len(back) else 0.0
    assert edges[(i, j)] == pytest.approx(directed[i, slot] + w_ji - directed[i, slot] * w_ji)
    assert np.all((weight > 0) & (weight <= 1))


def test_edges_are_drawn_in_proportion_to_their_weight():
    sampler = EdgeSampler(np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([0.1, 0.3, 0.6]))
    heads, tails = sampler.draw(np.random.default_rng(0), 60_000)
    assert np.allclose(np.bincount(heads, minlength=3) / 60_000, [0.1, 0.3, 0.6], atol=0.01)
    assert np.array_equal(tails, (heads + 1) % 3)
    assert sampler.total == pytest.approx(1.0)


def test_curve_parameters_are_umaps_for_its_default_min_dist():
    a, b = curve_parameters(0.1)
    assert a == pytest.approx(1.577, abs=0.01) and b == pytest.approx(0.895, abs=0.01)


@pytest.mark.parametrize("start", [0, 1, 2])
def test_gradient_steps_on_the_graph_term_alone_keep_neighbours_together(start):
    """Descending UMAP's cross-entropy on a fixed graph, with fixed negative pairs, turns
    random codes into a map that keeps each point's neighbours."""
    import tensorflow as tf

    from workers.pipeline.map_losses import graph_cross_entropy

    x = rolled_sheet(300, 1)
    head, tail, _ = fuzzy_graph(*nearest_neighbours(x, 10))
    rng = np.random.default_rng(5)
    negatives = rng.integers(0, len(x), size=(2, 5 * len(head)))
    a, b = curve_parameters(0.1)

    def loss(codes):
        spread = codes * 10.0  # fit's graph_scale
        attraction, repulsion = graph_cross_entropy(
            tf.gather(spread, head), tf.gather(spread, tail),
            tf.gather(spread, negatives[0]), tf.gather(spread, negatives[1]), a, b)
        return attraction + 5.0 * repulsion

    before = random_codes(len(x), start)
    after = descend(loss, before, steps=300, learning_rate=1.0)
    # Measured: the loss falls from 3.7-3.8 to 1.1-1.5, trustworthiness rises from 0.50-0.51 to 0.98-0.99.
    assert float(loss(after)) < 0.5 * float(loss(before))
    trust_before, trust_after = (trustworthiness(x, codes, n_neighbors=10) for codes in (before, after))
    assert trust_before < 0.6 and trust_after > 0.9


@pytest.fixture(scope="module")
def videos():
    """Twelve generated videos: each a smooth random walk of 60 frames in 256-d, from its own start."""
    return generated_videos(12, dims=256, seed=7)


def test_the_default_map_is_reproducible_and_keeps_videos_as_paths(videos):
    x, video = videos
    codes = TripletAutoencoder(seed=0).fit(x).transform(x)
    # Same seed, same map; another seed, another: shown on a short training of the same kind
    # (whether a training repeats itself does not depend on how long it is; three whole ones took 80 s).
    short = TripletAutoencoder(seed=0, epochs=5).fit(x).transform(x)
    assert np.array_equal(short, TripletAutoencoder(seed=0, epochs=5).fit(x).transform(x))
    assert not np.allclose(short, TripletAutoencoder(seed=1, epochs=5).fit(x).transform(x), atol=1e-3)
    same = video[1:] == video[:-1]
    steps = np.linalg.norm(np.diff(codes, axis=0), axis=1)[same]
    pairs = np.random.default_rng(0).integers(0, len(x), size=(2, 5000))
    random_pairs = np.linalg.norm(codes[pairs[0]] - codes[pairs[1]], axis=1)
    # A video draws a path: consecutive frames are close compared with random pairs (measured
    # 0.011-0.012 over seeds 0-5; a scatter gives about 1), and the map's neighbours are real
    # ones (measured 0.9998).
    assert np.median(steps) < 0.1 * np.median(random_pairs)
    assert trustworthiness(x, codes, n_neighbors=10) > 0.99


def test_the_graph_term_history_steps_and_progress(videos):
    x, _ = videos
    fractions = []
    model = TripletAutoencoder(epochs=3, max_steps=5, batch_size=128, triplet_weight=0.5).fit(
        x, progress=fractions.append)
    per_epoch = len(model.history_["loss"])
    assert model.steps_ == 5 and per_epoch >= 1  # capped by max_steps
    assert max(f for f in fractions if f <= 0.05) == pytest.approx(0.05)  # the graph first...
    assert fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)  # ...then the epochs
    h = {name: np.array(values) for name, values in model.history_.items()}
    weighted = (h["reconstruction"] + model.regularizer_weight * h["regularizer"] + 0.5 * h["triplet"]
                + h["attraction"] + model.negatives * h["repulsion"])
    assert np.allclose(h["loss"], weighted, rtol=1e-4)
    assert np.all(h["attraction"] > 0) and np.all(h["repulsion"] > 0)


def test_too_few_frames_for_the_neighbours_asked_and_bad_parameters():
    with pytest.raises(ValueError, match="a frame more than its 10 neighbours: got 10 frame"):
        nearest_neighbours(clustered(10), 10)
    for bad in (dict(negatives=0), dict(neighbours=0), dict(batch_size=1), dict(graph_scale=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TripletAutoencoder(**bad).fit(clustered(20))
    codes = TripletAutoencoder(epochs=2).fit(clustered(5)).transform(clustered(5))  # k shrinks to n - 1
    assert codes.shape == (5, 2) and np.all(np.isfinite(codes))
