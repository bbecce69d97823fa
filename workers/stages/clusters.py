"""The `cluster` stage: groups the frames of the collection's map into clusters (after every
new map, and when asked), or merges or splits clusters of the current grouping.

A grouping is a Clustering row and its files (workers/pipeline/cluster_files.py), made from
one published map version; the collection shows the latest. Labels belong to frames, not to
clusters (explorer/labels.py), so a new grouping keeps every name people gave.

Job params of a `cluster` job: {"method", "k", "preference", "damping", "over"} to group
again; {"edit": "merge", "clusters": [a, b, ...]} or {"edit": "split", "cluster": c, "k": k}
to change the current grouping (with "clustering": the one they were asked of, and "by" and
"who": the person, for the history). An ingest or a train job groups its new map with the
settings of the collection's last grouping (or the CLUSTER_* settings).
"""
from django.conf import settings
from django.db import transaction

from explorer.models import Clustering, Collection, Job, LabelAction
from workers import lifecycle
from workers.stages import Report

GROUPING_PARAMS = ("method", "k", "preference", "damping", "over")


def wanted(job):
    return job.kind == Job.Kind.CLUSTER or settings.CLUSTER_AFTER_MAP


def default_params():
    return {"method": settings.CLUSTER_METHOD, "over": settings.CLUSTER_OVER,
            **({"k": settings.CLUSTER_K} if settings.CLUSTER_METHOD == "kmeans" else {})}


def grouping_params(job):
    """What to group with: the job's own settings, else the collection's last grouping's."""
    if job.kind == Job.Kind.CLUSTER:
        return {key: job.params[key] for key in GROUPING_PARAMS if job.params.get(key) is not None}
    current = job.collection.clustering
    return dict(current.params) if current else default_params()


def cluster(job):
    from workers.pipeline.map_versions import MapSnapshot

    collection = job.collection
    version = collection.embedding.get("map")
    if not version:
        raise RuntimeError(f"collection {collection.name!r} has no map to cluster yet")
    current = collection.clustering
    if job.kind != Job.Kind.CLUSTER and current is not None and current.map_version == version:
        return  # the map did not change: its clusters, merges and splits stay as they are
    snapshot = MapSnapshot(collection.maps_dir / version, collection.sources_dir)
    if job.params.get("edit"):
        parent = _edited_clustering(job, version)
        _save(job, snapshot, _edit(job, snapshot, parent), parent.params, parent)
        return
    params = grouping_params(job)
    try:
        clusters = _group(job, snapshot, params)
    except RuntimeError as error:
        if job.kind == Job.Kind.CLUSTER:
            raise
        # An ingest's map is published already: it keeps the clusters it had, and says why.
        lifecycle.add_skipped(job, [{"path": "", "reason": f"the new map was not clustered: {error}",
                                     "kind": Job.Skip.WARNING}])
        return
    _save(job, snapshot, clusters, params, None)


def _save(job, snapshot, clusters, params, parent):
    """Record the clustering and make it current, unless what it was made from changed
    meanwhile (another map, or another clustering than the one it edits): then it is
    dropped, and the job says why."""
    import shutil

    from workers.pipeline.cluster_files import save

    collection, version = job.collection, snapshot.version
    lifecycle.update(job.pk, progress=0.9, message=f"saving {len(clusters)} cluster(s)")
    made = Clustering.objects.create(
        collection=collection, job=job, map_version=version, params=params, parent=parent,
        edit={key: job.params[key] for key in ("edit", "clusters", "cluster", "k") if key in job.params}
        if parent else {}, clusters=len(clusters), outliers=int(clusters.outliers.sum()), details=clusters.details)
    try:
        save(made.directory, clusters, snapshot.layout, {"stage": "cluster", "clustering": made.pk, "map": version})
        with transaction.atomic():
            lifecycle.update(job.pk, progress=1.0)  # raises JobCancelled: a cancelled job changes nothing
            still = Collection.objects.filter(pk=collection.pk, embedding__map=version)
            if parent is not None:
                still = still.filter(clustering=parent)
            if not still.update(clustering=made):
                raise RuntimeError("the map or its clusters changed while this clustering was made: look at "
                                   "them again" + (" and repeat the merge or split" if parent else ""))
            if parent is not None:
                _record_edit(job, parent, made)
    except BaseException:
        made.delete()
        shutil.rmtree(made.directory, ignore_errors=True)
        raise


def _group(job, snapshot, params):
    from workers.pipeline.clustering import DAMPING, ClusteringError, clip_groups, cluster as group

    over = params.get("over", "frames")
    groups = clip_groups(snapshot.index["source"], snapshot.index["time"], snapshot.clip_seconds) \
        if over == "clips" else None
    lifecycle.update(job.pk, progress=0.1, message=f"clustering {len(snapshot)} frame(s) by {params['method']}"
                     + (f" over {int(groups.max()) + 1} clip(s)" if groups is not None else ""))
    try:
        return group(snapshot.vectors, method=params["method"], k=params.get("k"),
                     preference=params.get("preference"), damping=params.get("damping", DAMPING), groups=groups)
    except ClusteringError as error:
        raise RuntimeError(str(error)) from None


def _edited_clustering(job, version):
    """The grouping a merge or a split was asked of; refused when it is no longer current."""
    current = job.collection.clustering
    asked = job.params.get("clustering")
    if current is None or current.pk != asked or current.map_version != version:
        raise RuntimeError("the clusters were made again since this was asked: look at them again and "
                           "repeat the merge or split")
    return current


def _edit(job, snapshot, parent):
    """The parent's clusters with the job's merge or split applied."""
    from workers.pipeline.cluster_files import ClusterFiles
    from workers.pipeline.clustering import ClusteringError, describe, merge, split

    labels = ClusterFiles(parent.directory).labels()
    known = set(range(int(labels.max()) + 1))
    named = job.params["clusters"] if job.params["edit"] == "merge" else [job.params["cluster"]]
    unknown = [c for c in named if c not in known]
    if unknown:
        raise RuntimeError(f"no cluster {', '.join(map(str, unknown))}: the clusters are 0 to {max(known)}")
    lifecycle.update(job.pk, progress=0.1, message=f"{job.params['edit']} of cluster(s) {', '.join(map(str, named))}")
    try:
        if job.params["edit"] == "merge":
            labels = merge(labels, named)
        else:
            labels = split(snapshot.vectors, labels, named[0], k=job.params.get("k", 2))
    except ClusteringError as error:
        raise RuntimeError(str(error)) from None
    return describe(snapshot.vectors, labels, details={**parent.details, "edited": job.params["edit"]})


def _record_edit(job, parent, made):
    params = job.params
    if params["edit"] == "merge":
        description = f"merged clusters {', '.join(map(str, params['clusters']))}"
    else:
        description = f"split cluster {params['cluster']} in {params.get('k', 2)}"
    LabelAction.objects.create(
        collection=job.collection, kind=LabelAction.Kind.MERGE if params["edit"] == "merge" else LabelAction.Kind.SPLIT,
        user_id=params.get("by"), who=params.get("who", ""), description=description,
        clustering_before=parent, clustering_after=made)


def report(job):
    made = Clustering.objects.filter(job=job).first()  # ordered newest first
    if made is None:
        return Report()
    from workers.pipeline.cluster_files import ClusterFiles

    try:
        small = sum(c["small"] for c in ClusterFiles(made.directory).clusters)
    except FileNotFoundError:
        small = 0
    part = f"{made.clusters} cluster(s)"
    if small or made.outliers:
        part += f" ({small} small, {made.outliers} outlier frame(s))"
    note = made.details.get("note")
    return Report((part + (f": {note}" if note else ""),))
