"""JSON API of clusters: the collection's clusters with their places on the map and their
labels, a cluster's members (paged, nearest its centre first, outliers last), grouping
again, merging and splitting (jobs: workers/stages/clusters.py). Labelling them is
explorer/label_api.py."""
import functools

import numpy as np
from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiResponse, extend_schema, extend_schema_field, inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from explorer import labels as labelling
from explorer.api import JobSerializer, json_body, started, started_response
from explorer.api_errors import Conflict, error_response, not_made_yet
from explorer.api_params import (
    INT64_MAX, ExactFields, NumberedPageQuery, StrictFloatField, StrictIntegerField, numbered_page, validated_query,
)
from explorer.jobs import NotReady, start_cluster_edit, start_clustering
from explorer.map_api import FrameSchema, frame_json, source_info
from explorer.models import Collection, Label
from explorer.served_maps import snapshot
from workers.pipeline.cluster_files import ClusterFiles
from workers.pipeline.clustering import DAMPING


NOT_FOUND = OpenApiResponse(description="Unknown collection or cluster.")
NO_CLUSTERS = error_response("The collection has no map or no clusters yet: `detail` says what is running.")


# --- reading the current clusters ---

@functools.lru_cache(maxsize=16)
def _files(directory):
    return ClusterFiles(directory)


def current_clusters(collection, asked=None):
    """(clustering, its files, the map it was made from), or 409 saying what is missing; or,
    when `asked` (the clustering a request's cluster numbers come from) is no longer
    current, 409 saying so: numbers of another clustering name other frames."""
    clustering = collection.clustering
    if asked is not None and clustering is not None and clustering.pk != asked:
        raise Conflict(f"the clusters were made again since (clustering {clustering.pk} is current, not {asked}): "
                       "look at them again")
    if clustering is None:
        raise not_made_yet(collection, "has no clusters")
    current = snapshot(collection, clustering.map_version)
    if current is None or not (clustering.directory / "clusters.json").exists():
        raise Conflict(f"the clusters of collection {collection.pk} were made from a map that is gone: "
                       "cluster it again")
    return clustering, _files(str(clustering.directory)), current


def collection_or_404(pk):
    return get_object_or_404(Collection, pk=pk)


def _label_names(collection):
    return dict(Label.objects.filter(collection=collection).values_list("pk", "name"))


def _cluster_labels(collection, files, current):
    """Per cluster: (its most common label's name or None, that label's frames, frames labelled)."""
    rows = labelling.row_labels(collection, current)
    names = _label_names(collection)
    labelled = rows > 0
    # One pass: how many frames of each cluster have each label.
    labels, per_label = np.unique(rows[labelled], return_inverse=True)
    counts = np.zeros((len(files), len(labels)), dtype=np.int64)
    np.add.at(counts, (files.labels()[labelled], per_label.reshape(-1)), 1)
    summary = {}
    for cluster, row in enumerate(counts):
        top = int(np.argmax(row)) if len(labels) else 0
        summary[cluster] = (names.get(int(labels[top])) if len(labels) and row[top] else None,
                            int(row[top]) if len(labels) else 0, int(row.sum()))
    return summary


def _cluster(described, current, info, label):
    name, share, labelled = label
    exemplar = frame_json(current, described["exemplar"], info)
    return {**{k: described[k] for k in ("id", "size", "cohesion", "small", "outliers", "centre", "outline")},
            "exemplar": exemplar, "label": name, "label_frames": share, "labelled": labelled}


class ClusterSchema(serializers.Serializer):
    id = serializers.IntegerField(help_text="0 is the largest cluster.")
    size = serializers.IntegerField()
    cohesion = serializers.FloatField(help_text="1: all members alike; 0: no tighter than the whole collection.")
    small = serializers.BooleanField(help_text="An outlier cluster: fewer members than the smallest size kept.")
    outliers = serializers.IntegerField(help_text="Members far from the others.")
    centre = serializers.ListField(child=serializers.FloatField(), help_text="Where it sits on the map (x, y).")
    outline = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()),
                                    help_text="A polygon round the core of its members on the map.")
    exemplar = FrameSchema(help_text="Its medoid: the member nearest all the others.")
    label = serializers.CharField(allow_null=True, help_text="The label most of its labelled members have.")
    label_frames = serializers.IntegerField(help_text="Members with that label.")
    labelled = serializers.IntegerField(help_text="Members with any label.")


class ClusteringSchema(serializers.Serializer):
    id = serializers.IntegerField()
    params = serializers.DictField(help_text="method, over, k, preference, damping.")
    edit = serializers.DictField(help_text="For a merge or a split: what was merged or split.")
    map_version = serializers.CharField()
    current_map = serializers.BooleanField(help_text="Made from the map being shown (false while it is remade).")
    clusters = serializers.IntegerField()
    outliers = serializers.IntegerField()
    details = serializers.DictField()
    created_at = serializers.DateTimeField()


class ClusterRequest(ExactFields, serializers.Serializer):
    method = serializers.ChoiceField(choices=["auto", "kmeans", "affinity"], default="auto",
                                     help_text="auto picks the number of clusters itself; kmeans makes k.")
    k = StrictIntegerField(required=False, min_value=1, max_value=10_000,
                           help_text="Clusters, for kmeans (default: the CLUSTER_K setting, 8).")
    preference = StrictFloatField(required=False, help_text="Affinity propagation's preference (negative; lower "
                                                            "makes fewer clusters). Default: the median similarity.")
    damping = StrictFloatField(required=False, min_value=0.5, max_value=0.99,
                               help_text=f"Affinity propagation's damping (default {DAMPING}): raise it when it "
                                         "does not settle.")
    over = serializers.ChoiceField(choices=["frames", "clips"], required=False,
                                   help_text="clips: each clip's frames are clustered as one, by their mean.")

    def validate(self, data):
        # Each method keeps only its own settings (an auto clustering records no k).
        own = {"auto": (), "kmeans": ("k",), "affinity": ("preference", "damping")}[data["method"]]
        data = {key: value for key, value in data.items() if key in ("method", "over") + own}
        if data["method"] == "kmeans":
            data.setdefault("k", settings.CLUSTER_K)
        return data


def clustering_field():
    return StrictIntegerField(required=False, min_value=1, max_value=INT64_MAX,
                              help_text="The clustering the cluster numbers are of (`clustering.id`): when it is no "
                                        "longer current the request is refused (409), not applied to other frames.")


@extend_schema_field({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
                      "minItems": 2, "maxItems": 100, "uniqueItems": True})
class ClusterListField(serializers.ListField):
    child = StrictIntegerField(min_value=0, max_value=INT64_MAX)

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        if len(set(values)) != len(values):
            raise serializers.ValidationError("name each cluster once")
        return values


class MergeRequest(ExactFields, serializers.Serializer):
    clusters = ClusterListField(min_length=2, max_length=100, help_text="Clusters to make one.")
    clustering = clustering_field()


class SplitRequest(ExactFields, serializers.Serializer):
    k = StrictIntegerField(min_value=2, max_value=20, default=2, help_text="Parts, by k-means inside the cluster.")
    clustering = clustering_field()


@extend_schema(responses={200: inline_serializer("Clusters", {
    "clustering": ClusteringSchema(), "clusters": ClusterSchema(many=True)}), 404: NOT_FOUND, 409: NO_CLUSTERS},
    methods=["GET"], operation_id="clusters_list")
@extend_schema(request=ClusterRequest, responses=started(JobSerializer, "clustering job", {
    404: NOT_FOUND, 409: error_response("The collection has no map to cluster yet, or fewer frames than k.")}),
    methods=["POST"],
    operation_id="clusters_make")
@api_view(["GET", "POST"])
def clusters(request, pk):
    """GET: the collection's clusters, largest first, each with its exemplar, cohesion, place
    on the map and label. POST (editors): cluster the map again; labels stay with their frames."""
    collection = collection_or_404(pk)
    if request.method == "POST":
        params = {key: value for key, value in json_body(request, ClusterRequest).items()}
        params.setdefault("over", settings.CLUSTER_OVER)
        try:
            return started_response(JobSerializer, start_clustering(collection, params))
        except NotReady as error:
            raise Conflict(str(error)) from None
        except ValueError as error:  # k beyond the map's frames: the collection cannot, today
            raise Conflict(str(error)) from None
    clustering, files, current = current_clusters(collection)
    labels = _cluster_labels(collection, files, current)
    info = source_info([int(current.index["source"][c["exemplar"]]) for c in files.clusters])
    return Response({
        "clustering": {"id": clustering.pk, "params": clustering.params, "edit": clustering.edit,
                       "map_version": clustering.map_version,
                       "current_map": clustering.map_version == collection.embedding.get("map"),
                       "clusters": clustering.clusters, "outliers": clustering.outliers,
                       "details": clustering.details, "created_at": clustering.created_at},
        "clusters": [_cluster(c, current, info, labels[c["id"]]) for c in files.clusters]})


def known_cluster(files, cluster):
    if not 0 <= cluster < len(files):
        raise exceptions.NotFound(f"no cluster {cluster}: the clusters are 0 to {len(files) - 1}")


@extend_schema(parameters=[NumberedPageQuery], responses={200: inline_serializer("ClusterMembers", {
    "clustering": serializers.IntegerField(help_text="The clustering the cluster's number is of."),
    "cluster": ClusterSchema(), "count": serializers.IntegerField(), "page": serializers.IntegerField(),
    "pages": serializers.IntegerField(), "members": inline_serializer("Member", {
        "frame": FrameSchema(), "outlier": serializers.BooleanField(), "distance": serializers.FloatField(),
        "label": serializers.CharField(allow_null=True)}, many=True)}), 404: NOT_FOUND, 409: NO_CLUSTERS},
    operation_id="cluster_members")
@api_view(["GET"])
def cluster_members(request, pk, cluster):
    """A cluster and a page of its members: nearest its centre first, outliers last."""
    collection = collection_or_404(pk)
    query = validated_query(request, NumberedPageQuery)
    clustering, files, current = current_clusters(collection)
    known_cluster(files, cluster)
    rows = files.rows_of(cluster)
    start, stop, pages = numbered_page(len(rows), query, f"cluster {cluster}")
    page_rows = rows[start:stop]
    frames = labelling.frames_of_rows(current, page_rows)
    names = _label_names(collection)
    now = labelling.current_labels(frames)
    exemplar = files.clusters[cluster]["exemplar"]
    info = source_info([source for source, _ in frames] + [int(current.index["source"][exemplar])])
    label = _cluster_labels(collection, files, current)[cluster]
    return Response({
        "clustering": clustering.pk, "cluster": _cluster(files.clusters[cluster], current, info, label),
        "count": len(rows),
        "page": query["page"], "pages": pages,
        "members": [{"frame": frame_json(current, int(row), info), "outlier": bool(files.members["outlier"][row]),
                     "distance": round(float(files.members["distance"][row]), 4),
                     "label": names.get(now.get(key))} for row, key in zip(page_rows, frames)]})


def _edit(request, pk, edit, asked):
    collection = collection_or_404(pk)
    clustering, files, _ = current_clusters(collection, asked)
    for cluster in edit.get("clusters", [edit.get("cluster")]):
        known_cluster(files, cluster)
    try:
        return started_response(JobSerializer, start_cluster_edit(collection, edit, request.user))
    except NotReady as error:
        raise Conflict(str(error)) from None


@extend_schema(request=MergeRequest, responses=started(JobSerializer, "merge job", {404: NOT_FOUND, 409: NO_CLUSTERS}))
@api_view(["POST"])
def merge_clusters(request, pk):
    """Make several clusters one (a job: every frame is described again). Undo goes back."""
    body = json_body(request, MergeRequest)
    return _edit(request, pk, {"edit": "merge", "clusters": body["clusters"]}, body.get("clustering"))


@extend_schema(request=SplitRequest, responses=started(JobSerializer, "split job", {404: NOT_FOUND, 409: NO_CLUSTERS}))
@api_view(["POST"])
def split_cluster(request, pk, cluster):
    """Split a cluster in k by k-means inside it (a job). Undo goes back."""
    body = json_body(request, SplitRequest)
    return _edit(request, pk, {"edit": "split", "cluster": cluster, "k": body["k"]}, body.get("clustering"))


