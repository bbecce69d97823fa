"""A clustering on disk, and read back for the web: which cluster each frame of a map is in,
and what each cluster is.

A clustering's folder holds `members` (one row per frame of the map it was made from, in
map order: cluster, distance to the cluster's centre, outlier flag) and `clusters.json`
(per cluster: size, exemplar row, cohesion, flags, and where it sits on the map: the
centre of its members' 2D places and an outline around the core of them). Written once,
whole or not at all (arrays.py), and never changed: a merge or a split is a new folder.
"""
import json
from pathlib import Path

import numpy as np

from workers.pipeline.arrays import ArrayWriter, open_array, write_json_atomic

MEMBERS_DTYPE = [("cluster", "<i4"), ("distance", "<f4"), ("outlier", "u1")]
CORE = 0.8  # the outline on the map goes round this share of the members nearest their centre


def save(directory, clusters, layout, produced_by):
    """Write `clusters` (a clustering.Clusters over the map's rows) and their places on the
    map (`layout`: the 2D place of each row)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layout = np.asarray(layout, dtype=np.float64)
    rows = np.zeros(len(clusters.labels), dtype=MEMBERS_DTYPE)
    rows["cluster"], rows["distance"], rows["outlier"] = clusters.labels, clusters.distances, clusters.outliers
    with ArrayWriter(directory, "members", (), MEMBERS_DTYPE, produced_by) as out:
        out.append(rows)
    order = np.argsort(clusters.labels, kind="stable")
    described = []
    for number, members in enumerate(np.split(order, np.cumsum(clusters.sizes)[:-1])):
        centre, outline = _place(layout[members])
        described.append({
            "id": number, "size": int(clusters.sizes[number]), "exemplar": int(clusters.exemplars[number]),
            "cohesion": round(float(clusters.cohesion[number]), 4), "small": bool(clusters.small[number]),
            "outliers": int(clusters.outliers[members].sum()), "centre": centre, "outline": outline,
        })
    write_json_atomic(directory / "clusters.json", {"clusters": described, "details": _jsonable(clusters.details),
                                                    "produced_by": produced_by})


def _place(points):
    """The centre of a cluster's members on the map (their median) and a polygon round the
    CORE of them nearest it: a convex hull, or a small square for fewer than three places."""
    from scipy.spatial import ConvexHull, QhullError

    centre = np.median(points, axis=0)
    near = np.linalg.norm(points - centre, axis=1)
    core = points[near <= np.quantile(near, CORE)] if len(points) > 4 else points
    try:
        outline = core[ConvexHull(core).vertices]
    except (QhullError, ValueError):  # fewer than 3 distinct places, or all on a line
        low, high = core.min(axis=0) - 0.01, core.max(axis=0) + 0.01
        outline = np.array([low, [high[0], low[1]], high, [low[0], high[1]]])
    return [round(float(v), 5) for v in centre], [[round(float(x), 5), round(float(y), 5)] for x, y in outline]


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class ClusterFiles:
    """A saved clustering, read-only."""

    def __init__(self, directory):
        self.directory = Path(directory)
        with open(self.directory / "clusters.json", encoding="utf-8") as handle:
            meta = json.load(handle)
        self.clusters, self.details = meta["clusters"], meta["details"]
        self.members = open_array(self.directory, "members")

    def __len__(self):
        return len(self.clusters)

    def labels(self):
        return np.asarray(self.members["cluster"])

    def rows_of(self, cluster):
        """The map rows of a cluster's members: nearest its centre first, outliers last."""
        rows = np.flatnonzero(self.members["cluster"] == cluster)
        order = np.lexsort((self.members["distance"][rows], self.members["outlier"][rows]))
        return rows[order]
