"""Clusters of frames (or clips) in the 256-d PCA space: k-means, affinity propagation, and
`auto`, the default, which picks the number of groups itself.

`auto`: the communities of the items' k-nearest-neighbour graph, found by Louvain's
modularity optimisation (as single-cell and image-collection tools group cells and photos
without a k). Ward's hierarchy cut at its best silhouette was tried and dropped: where
classes share a superclass (natural and man-made scenes, say) silhouette prefers the two
superclasses and NMI halves; the graph keeps the classes. The graph is built on a sample of
at most `sample` items, so the cost is bounded whatever the collection's size: the others
join the cluster whose centre is nearest (tests/benchmarks/bench_clusters.py).

Affinity propagation needs n^2 memory: past `max_points` items it runs on the centres of
that many k-means micro-clusters, and each item follows its micro-cluster.

`describe` gives each cluster its exemplar (the medoid, found among the members nearest the
centre), its size, a cohesion score (1 - mean distance to the centre / typical distance
between two random items: 1 when all members are alike, 0 when no tighter than the whole
collection) and flags: a cluster smaller than `min_size` is an outlier cluster, a member
much further from its centre than its cluster's others (a robust z-score past 3) is an
outlier member.

Pure NumPy, SciPy and scikit-learn: no Django, no files.
"""
from dataclasses import dataclass, field

import numpy as np

METHODS = ("auto", "kmeans", "affinity")
# Affinity propagation's damping: scikit-learn's 0.5 oscillated without settling on groups as
# plain as those of the tests; 0.9 settles on them.
DAMPING = 0.9
ONE_GROUP = "every item is alike (or there is only one): they make one group"


class ClusteringError(ValueError):
    """The items cannot be clustered as asked (too few of them, all identical...)."""


@dataclass
class Clusters:
    """The clusters found, numbered 0..n_clusters-1 by decreasing size."""
    labels: np.ndarray  # cluster of each item
    distances: np.ndarray  # each item's distance to its cluster's centre
    outliers: np.ndarray  # bool, far-off members
    exemplars: np.ndarray  # item index of each cluster's medoid
    sizes: np.ndarray
    cohesion: np.ndarray
    small: np.ndarray  # bool per cluster: fewer than min_size members
    centres: np.ndarray
    details: dict = field(default_factory=dict)  # how the method chose (k tried, scores...)

    def __len__(self):
        return len(self.sizes)


def clip_groups(sources, times, seconds):
    """The clip of each row: consecutive stretches of `seconds` of one source (rows of a
    source are contiguous and in time order). Returns a group number per row, 0, 1, ..."""
    sources = np.asarray(sources)
    times = np.asarray(times, dtype=np.float64)
    if len(sources) == 0:
        return np.zeros(0, dtype=np.int64)
    new_source = np.concatenate([[True], sources[1:] != sources[:-1]])
    source_start = np.maximum.accumulate(np.where(new_source, np.arange(len(sources)), 0))
    window = np.floor((times - times[source_start]) / seconds).astype(np.int64)
    boundary = new_source | np.concatenate([[False], window[1:] != window[:-1]])
    return np.cumsum(boundary) - 1


def group_means(vectors, groups, chunk=65_536):
    """The mean vector of each group (groups numbered 0..G-1), read in chunks."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    sums = np.zeros((n_groups, vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(vectors), chunk):
        np.add.at(sums, groups[start:start + chunk], np.asarray(vectors[start:start + chunk], dtype=np.float64))
    counts = np.bincount(groups, minlength=n_groups)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def check_clusterable(X, k=None):
    """Refuse with a clear message what cannot be clustered as asked."""
    if len(X) == 0:
        raise ClusteringError("there is nothing to cluster: the map has no frames")
    if k is not None and k > len(X):
        raise ClusteringError(f"cannot make {k} clusters of {len(X)} item(s): ask for at most {len(X)}")


def _all_alike(X):
    return len(X) < 2 or not np.any(np.ptp(X, axis=0) > 0)


def kmeans(X, k, restarts=4, seed=0):
    """k-means++ seeding, `restarts` runs, the best kept."""
    from sklearn.cluster import KMeans

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    check_clusterable(X, k)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = KMeans(n_clusters=k, init="k-means++", n_init=restarts, random_state=seed).fit(X)
    distinct = len(np.unique(model.labels_))
    if distinct < k or any("distinct clusters" in str(w.message) for w in caught):
        raise ClusteringError(f"cannot make {k} clusters: the {len(X)} item(s) hold only {distinct} distinct one(s)")
    return model.labels_, {"k": k, "restarts": restarts, "inertia": float(model.inertia_)}


def affinity(X, preference=None, damping=DAMPING, max_points=2000, seed=0):
    """Affinity propagation on negative squared distances. `preference` defaults to their
    median (scikit-learn's default): lower makes fewer clusters."""
    from sklearn.cluster import AffinityPropagation

    check_clusterable(X)
    if _all_alike(X):
        return np.zeros(len(X), dtype=np.int64), {"note": ONE_GROUP}
    points, follow = X, None
    if len(X) > max_points:
        points, follow = _micro_clusters(X, max_points, seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = AffinityPropagation(preference=preference, damping=damping, random_state=seed, max_iter=400,
                                    convergence_iter=30).fit(points)
    labels = model.labels_
    if labels.min() < 0 or any(issubclass(w.category, ConvergenceWarning) for w in caught):
        raise ClusteringError(f"affinity propagation did not settle in 400 iterations (damping {damping}): raise "
                              "the damping (up to 0.99), or set another preference")
    if follow is not None:
        labels = labels[follow]
    return labels, {"preference": preference, "damping": damping, "points": len(points),
                    "iterations": int(model.n_iter_)}


def auto(X, neighbours=None, sample=10_000, resolution=1.0, seed=0):
    """Communities of the k-nearest-neighbour graph (Louvain, modularity), on a sample of
    at most `sample` items; the others join the cluster whose centre is nearest. The
    graph links each item to `neighbours` others: by default half the square root of the
    items, from 2 to 15 (15 on a few hundred clips merged whole videos of the sample media
    into 3 groups; 4 kept their 8 scenes apart, and 15 suits thousands)."""
    import networkx as nx
    from sklearn.neighbors import kneighbors_graph

    check_clusterable(X)
    if _all_alike(X):
        return np.zeros(len(X), dtype=np.int64), {"note": ONE_GROUP}
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(X), size=min(sample, len(X)), replace=False))
    points = np.asarray(X[picked], dtype=np.float32)
    neighbours = neighbours or int(np.clip(round(np.sqrt(len(points)) / 2), 2, 15))
    graph = kneighbors_graph(points, min(neighbours, len(points) - 1), include_self=False)
    graph = graph.maximum(graph.T)  # a neighbour either way is an edge
    communities = nx.community.louvain_communities(nx.from_scipy_sparse_array(graph), resolution=resolution,
                                                   seed=seed)
    sampled = np.zeros(len(points), dtype=np.int64)
    for number, members in enumerate(communities):
        sampled[list(members)] = number
    details = {"neighbours": neighbours, "resolution": resolution, "sample": len(picked)}
    if len(picked) == len(X):
        return sampled, details
    centres = np.stack([points[sampled == c].mean(axis=0) for c in range(len(communities))])
    labels = nearest_centre(X, centres)
    labels[picked] = sampled
    return labels, details


def nearest_centre(X, centres, chunk=65_536):
    """The index of the nearest of `centres` for each row of X, read in chunks."""
    centres = np.asarray(centres, dtype=np.float32)
    squared = (centres ** 2).sum(axis=1)
    labels = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), chunk):
        rows = np.asarray(X[start:start + chunk], dtype=np.float32)
        labels[start:start + len(rows)] = np.argmin(squared[None, :] - 2 * rows @ centres.T, axis=1)
    return labels


def _micro_clusters(X, n, seed):
    from sklearn.cluster import MiniBatchKMeans

    model = MiniBatchKMeans(n_clusters=n, random_state=seed, n_init=1, batch_size=4096).fit(X)
    return model.cluster_centers_, model.labels_


def cluster(X, method="auto", k=None, preference=None, damping=DAMPING, groups=None, seed=0, min_size=None):
    """Cluster the rows of X and describe the clusters (see `Clusters`). With `groups` (a
    group number per row, as `clip_groups` gives), the groups' means are clustered and each
    row joins its group's cluster: a long static shot then counts once per clip, not once
    per frame."""
    X = np.asarray(X, dtype=np.float32)
    items = X if groups is None else group_means(X, groups)
    if method == "kmeans":
        if not k:
            raise ClusteringError("k-means needs a number of clusters (k)")
        labels, details = kmeans(items, k, seed=seed)
    elif method == "affinity":
        labels, details = affinity(items, preference=preference, damping=damping, seed=seed)
    elif method == "auto":
        labels, details = auto(items, seed=seed)
    else:
        raise ClusteringError(f"no clustering method {method!r}; the methods are {', '.join(METHODS)}")
    if groups is not None:
        labels, details = labels[groups], {**details, "clips": len(items)}
    return describe(X, labels, min_size=min_size, details={"method": method, **details})


def typical_distance(X, samples=4096, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(X), samples), rng.integers(0, len(X), samples)
    keep = a != b
    if not keep.any():
        return 1.0
    return float(np.median(np.linalg.norm(X[a[keep]] - X[b[keep]], axis=1))) or 1.0


def describe(X, labels, min_size=None, details=None, medoid_candidates=64, medoid_sample=2000, seed=0):
    """Number the clusters by decreasing size and give each its exemplar, cohesion and flags."""
    X = np.asarray(X, dtype=np.float32)
    _, labels, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels, sizes = rank[labels.reshape(-1)], sizes[order]
    n_clusters = len(sizes)
    centres, distances = _centres_and_distances(X, labels, sizes)
    typical = typical_distance(X, seed=seed)
    min_size = min_size or max(2, int(np.ceil(0.005 * len(X))))
    rng = np.random.default_rng(seed)
    exemplars = np.zeros(n_clusters, dtype=np.int64)
    cohesion = np.zeros(n_clusters, dtype=np.float64)
    outliers = np.zeros(len(X), dtype=bool)
    members_of = np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])
    for c, members in enumerate(members_of):
        member_distances = distances[members]
        cohesion[c] = max(0.0, 1.0 - float(member_distances.mean()) / typical)
        # The medoid: among the members nearest the centre, the one nearest the others.
        candidates = members[np.argsort(member_distances, kind="stable")[:medoid_candidates]]
        others = members if len(members) <= medoid_sample else rng.choice(members, medoid_sample, replace=False)
        spread = np.linalg.norm(X[candidates][:, None, :] - X[others][None, :, :], axis=2).sum(axis=1)
        exemplars[c] = candidates[int(np.argmin(spread))]
        median = np.median(member_distances)
        mad = np.median(np.abs(member_distances - median)) * 1.4826
        if len(members) >= 5 and mad > 0:
            outliers[members] = (member_distances - median) / mad > 3.0
    return Clusters(labels=labels.astype(np.int32), distances=distances.astype(np.float32), outliers=outliers,
                    exemplars=exemplars, sizes=sizes.astype(np.int64), cohesion=cohesion,
                    small=sizes < min_size, centres=centres, details=details or {})


def _centres_and_distances(X, labels, sizes, chunk=65_536):
    """Each cluster's mean and each item's distance to its cluster's mean, in chunks (a
    million 256-d rows at once would cost gigabytes of float64 copies)."""
    from scipy.sparse import csr_matrix

    sums = np.zeros((len(sizes), X.shape[1]), dtype=np.float64)
    for start in range(0, len(X), chunk):
        part = labels[start:start + chunk]
        onehot = csr_matrix((np.ones(len(part)), (part, np.arange(len(part)))), shape=(len(sizes), len(part)))
        sums += onehot @ np.asarray(X[start:start + chunk], dtype=np.float64)
    centres = (sums / sizes[:, None]).astype(np.float32)
    distances = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), chunk):
        distances[start:start + chunk] = np.linalg.norm(X[start:start + chunk] - centres[labels[start:start + chunk]],
                                                        axis=1)
    return centres, distances


def merge(labels, clusters):
    """The labels with every cluster of `clusters` joined into the first."""
    labels = np.array(labels)
    labels[np.isin(labels, clusters)] = clusters[0]
    return labels


def split(X, labels, cluster, k=2, seed=0):
    """The labels with `cluster` split in `k` by k-means on its members' rows of X."""
    labels = np.array(labels)
    members = np.flatnonzero(labels == cluster)
    try:
        parts, _ = kmeans(np.asarray(X[members], dtype=np.float32), k, seed=seed)
    except ClusteringError as error:
        raise ClusteringError(f"cannot split cluster {cluster}: {error}") from None
    labels[members] = np.where(parts == 0, cluster, labels.max() + parts)
    return labels
