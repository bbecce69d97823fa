"""Clustering, pure compute (workers/pipeline/clustering.py), on fixed generated vectors with
known groups: every method recovers groups that are plainly apart, the default without being
told how many; exemplars, cohesion and outlier flags mean what they say; clips count once;
bad requests get a clear error."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from workers.pipeline.clustering import (
    ClusteringError, auto, clip_groups, cluster, describe, group_means, merge, split,
)


def groups(sizes, dims=256, spread=1.0, apart=12.0, seed=0):
    """Gaussian groups of the given sizes, centres `apart` from each other in expectation."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, apart / np.sqrt(2 * dims), (len(sizes), dims))
    X = np.vstack([centres[g] + rng.normal(0, spread / np.sqrt(dims), (n, dims)) for g, n in enumerate(sizes)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return X.astype(np.float32), truth


def superclasses(seed=0):
    """8 classes in 2 superclasses of 4: the classes of a superclass are near each other, the
    superclasses far apart (as natural and man-made scenes are)."""
    rng = np.random.default_rng(seed)
    dims = 256
    tops = rng.normal(0, 1, (2, dims)) * 4
    X, truth = [], []
    for c in range(8):
        centre = tops[c // 4] + rng.normal(0, 1, dims) * 2.0
        n = 60 + 20 * c
        X.append(centre + rng.normal(0, 1, (n, dims)) * 1.6)
        truth += [c] * n
    return np.vstack(X).astype(np.float32), np.array(truth)


def test_auto_finds_the_groups_without_being_told_how_many():
    X, truth = groups([120, 90, 60, 40, 30])
    found = cluster(X)
    assert len(found) == 5
    assert adjusted_rand_score(truth, found.labels) == pytest.approx(1.0)
    assert list(found.sizes) == [120, 90, 60, 40, 30]  # numbered by decreasing size


def test_auto_keeps_classes_apart_inside_superclasses():
    # Ward's hierarchy cut at its best silhouette finds the 2 superclasses here.
    X, truth = superclasses()
    found = cluster(X)
    assert 7 <= len(found) <= 9
    assert adjusted_rand_score(truth, found.labels) > 0.9


def test_auto_on_a_sample_places_the_rest_by_their_nearest_centre():
    X, truth = groups([300, 200, 100])
    labels, details = auto(X, sample=150)
    assert details["sample"] == 150
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)


def test_kmeans_and_affinity_recover_the_groups():
    X, truth = groups([80, 60, 40])
    assert adjusted_rand_score(truth, cluster(X, method="kmeans", k=3).labels) == pytest.approx(1.0)
    found = cluster(X, method="affinity", preference=-50.0)
    assert adjusted_rand_score(truth, found.labels) == pytest.approx(1.0)


def test_affinity_past_its_memory_bound_runs_on_micro_clusters():
    from workers.pipeline.clustering import affinity

    X, truth = groups([150, 100, 50])
    labels, details = affinity(X, preference=-50.0, max_points=40)
    assert details["points"] == 40
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)


def test_exemplar_is_a_member_near_the_middle_and_outliers_are_flagged():
    X, truth = groups([50, 40])
    far = X[0].copy()  # a member of group 0, pushed far out along one axis
    far[0] += 3.0
    X = np.vstack([X, far[None, :]])
    truth = np.append(truth, 0)
    found = describe(X, truth)
    for c in range(len(found)):
        members = np.flatnonzero(found.labels == c)
        assert found.exemplars[c] in members
        # the medoid is among the members nearest the centre
        assert found.distances[found.exemplars[c]] <= np.median(found.distances[members])
    assert found.outliers[-1] and found.outliers.sum() <= 3
    assert ((found.cohesion > 0) & (found.cohesion <= 1)).all()


def test_cohesion_is_higher_for_a_tighter_group():
    tight, _ = groups([50], spread=0.2, seed=1)
    loose, _ = groups([50], spread=2.0, seed=2)
    found = describe(np.vstack([tight, loose + 5]), np.repeat([0, 1], 50))
    by_size_order = {int(found.labels[0]): "tight", int(found.labels[-1]): "loose"}
    cohesion = {name: found.cohesion[c] for c, name in by_size_order.items()}
    assert cohesion["tight"] > cohesion["loose"]


def test_small_clusters_are_flagged():
    X, truth = groups([100, 100, 2])
    found = describe(X, truth, min_size=5)
    assert list(found.small) == [False, False, True]


def test_clips_are_consecutive_stretches_of_one_source():
    sources = np.array([1, 1, 1, 1, 2, 2, 3])
    times = np.array([0.0, 2.0, 6.5, 7.0, 0.0, 9.0, 0.0])
    assert clip_groups(sources, times, 6.0).tolist() == [0, 0, 1, 1, 2, 3, 4]
    vectors = np.arange(14, dtype=np.float32).reshape(7, 2)
    means = group_means(vectors, clip_groups(sources, times, 6.0))
    assert means[0].tolist() == [1.0, 2.0] and means[4].tolist() == [12.0, 13.0]


def test_over_clips_a_long_static_shot_counts_once_per_clip_and_its_frames_stay_together():
    X, truth = groups([40, 40, 40])
    # group 0 is one long static shot: 400 copies of one frame, 10 clips of 40
    X = np.vstack([np.repeat(X[:1], 400, axis=0), X[40:]])
    sources = np.concatenate([np.zeros(400), np.arange(1, 81)]).astype(int)
    times = np.concatenate([np.arange(400) * 0.15, np.zeros(80)])
    clips = clip_groups(sources, times, 6.0)
    found = cluster(X, method="kmeans", k=3, groups=clips)
    assert found.details["clips"] == 10 + 80
    for clip in np.unique(clips):
        assert len(set(found.labels[clips == clip])) == 1


def test_merge_and_split():
    X, truth = groups([60, 60, 60])
    merged = merge(truth, [2, 0])
    assert set(merged) == {1, 2} and (merged[truth == 0] == 2).all()
    both = np.where(truth == 2, 0, truth)  # groups 0 and 2 as one cluster
    parts = split(X, both, 0, k=2)
    assert adjusted_rand_score(truth, parts) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["auto", "affinity"])
def test_identical_items_or_one_item_make_one_group(method):
    for X in (np.ones((20, 8), np.float32), np.ones((1, 8), np.float32)):
        found = cluster(X, method=method)
        assert len(found) == 1 and "one group" in found.details["note"]


def test_impossible_requests_say_why():
    X, _ = groups([5, 5])
    with pytest.raises(ClusteringError, match="cannot make 11 clusters of 10 item"):
        cluster(X, method="kmeans", k=11)
    with pytest.raises(ClusteringError, match="only 1 distinct"):
        cluster(np.ones((10, 4), np.float32), method="kmeans", k=2)
    with pytest.raises(ClusteringError, match="nothing to cluster"):
        cluster(np.zeros((0, 4), np.float32))
    with pytest.raises(ClusteringError, match="needs a number of clusters"):
        cluster(X, method="kmeans")
    with pytest.raises(ClusteringError, match="cannot split cluster 0"):
        split(np.ones((10, 4), np.float32), np.zeros(10, int), 0, k=2)
