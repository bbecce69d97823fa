"""JSON API of labels: the collection's labels and last actions, naming a cluster's members,
chosen frames or a whole video, undo, and labels in and out as CSV or JSON (explorer/labels.py
does the work; explorer/cluster_api.py serves the clusters themselves)."""
from django.core.validators import RegexValidator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from explorer import labels as labelling
from explorer.api import NO_PARAMETERS, json_body
from explorer.api_errors import Conflict, error_response
from explorer.api_params import (
    INT64_MAX, ExactFields, QuerySerializer, StrictBooleanField, StrictCharField, StrictIntegerField, validated_query,
)
from explorer.cluster_api import (
    NO_CLUSTERS, NOT_FOUND, clustering_field, collection_or_404, current_clusters, known_cluster,
)
from explorer.models import Label, LabelAction

MAX_FRAMES_PER_REQUEST = 10_000  # frames named one by one in a labelling request
IMPORT_MAX_BYTES = 50 * 1024 * 1024


class ActionSchema(serializers.ModelSerializer):
    class Meta:
        model = LabelAction
        fields = ["id", "kind", "who", "description", "frames", "created_at", "undone_at"]


# A label's name: something other than spaces, and no control characters (explorer/labels.py
# strips the spaces at either end).
LABEL_NAME = RegexValidator(r"\A[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*\Z",
                            "a label's name needs a character other than spaces, and no control characters")


def _label_field():
    return StrictCharField(allow_null=True, min_length=1, max_length=labelling.LABEL_MAX_LENGTH,
                           trim_whitespace=False, validators=[LABEL_NAME],
                           help_text="The label's name; null takes the label off.")


def _copies_field():
    return StrictBooleanField(required=False, default=False, help_text=(
        "true: the frames' copies too (their originals and the other copies of those, by the collection's "
        "copies: /api/collections/{id}/duplicates/)."))


class LabelCluster(ExactFields, serializers.Serializer):
    label = _label_field()
    with_copies = _copies_field()
    cluster = StrictIntegerField(min_value=0, max_value=INT64_MAX, help_text="Every member of this cluster.")
    clustering = clustering_field()


class LabelFrames(ExactFields, serializers.Serializer):
    label = _label_field()
    with_copies = _copies_field()
    frames = serializers.ListField(
        max_length=MAX_FRAMES_PER_REQUEST, min_length=1,
        child=serializers.ListField(child=StrictIntegerField(min_value=0, max_value=INT64_MAX), min_length=2,
                                    max_length=2), help_text="[source, frame number] pairs.")


class LabelSource(ExactFields, serializers.Serializer):
    label = _label_field()
    with_copies = _copies_field()
    source = StrictIntegerField(min_value=1, max_value=INT64_MAX, help_text="Every frame of this source.")


LABEL_REQUESTS = {"cluster": LabelCluster, "frames": LabelFrames, "source": LabelSource}


def _check_sampled(collection, frames):
    """404 unless every (source, frame) is a sampled frame of one of the collection's sources."""
    import numpy as np

    wanted = {}
    for source, frame in frames:
        wanted.setdefault(source, set()).add(frame)
    sources = collection.sources.in_bulk(list(wanted))
    for source_id, numbers in wanted.items():
        if source_id not in sources:
            raise exceptions.NotFound(f"source {source_id} is not of this collection")
        missing = numbers - set(np.asarray(labelling.source_frames(sources[source_id])[0]).tolist())
        if missing:
            raise exceptions.NotFound(f"frame {min(missing)} of source {source_id} was not sampled")


def _label_request(request):
    """The label request's body: exactly one of cluster, frames or source says which frames."""
    as_json = request.content_type.split(";")[0].strip().lower() == "application/json"
    if not (as_json and isinstance(request.data, dict)):
        json_body(request, LabelCluster)  # refuses it as not JSON (415) or not an object (400)
    named = [name for name in LABEL_REQUESTS if name in request.data]
    if len(named) != 1:
        raise exceptions.ValidationError({"non_field_errors": ["give exactly one of cluster, frames, source"]})
    return json_body(request, LABEL_REQUESTS[named[0]])


@extend_schema(responses={200: inline_serializer("Labels", {
    "labels": inline_serializer("LabelCount", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                                               "frames": serializers.IntegerField()}, many=True),
    "actions": ActionSchema(many=True)}), 404: NOT_FOUND}, methods=["GET"])
@extend_schema(request=PolymorphicProxySerializer("LabelRequest", serializers=list(LABEL_REQUESTS.values()),
                                                  resource_type_field_name=None),
               responses={200: ActionSchema, 400: error_response("Not a label request."), 404: NOT_FOUND,
                          409: NO_CLUSTERS}, methods=["POST"])
@api_view(["GET", "POST"])
def labels(request, pk):
    """GET: the collection's labels with their frame counts, and the last actions. POST
    (editors): label (or with label null, unlabel) a cluster's members, chosen frames, or
    every frame of a source; with_copies: their copies too."""
    from django.db.models import Count

    collection = collection_or_404(pk)
    if request.method == "GET":
        counted = Label.objects.filter(collection=collection).annotate(count=Count("frames"))
        return Response({"labels": [{"id": l.pk, "name": l.name, "frames": l.count} for l in counted],
                         "actions": ActionSchema(collection.label_actions.all()[:20], many=True).data})
    body = _label_request(request)
    name = body["label"]
    if "cluster" in body:
        clustering, files, current = current_clusters(collection, body.get("clustering"))
        known_cluster(files, body["cluster"])
        frames = labelling.frames_of_rows(current, files.rows_of(body["cluster"]))
        kind, what = LabelAction.Kind.NAME_CLUSTER, f"cluster {body['cluster']} ({len(frames)} frames)"
    elif "source" in body:
        source = get_object_or_404(collection.sources, pk=body["source"])
        numbers, _ = labelling.source_frames(source)
        frames = [(source.pk, int(n)) for n in numbers]
        kind, what = LabelAction.Kind.LABEL_VIDEO, f"every frame of {source.path.rsplit('/', 1)[-1]}"
    else:
        frames = [tuple(pair) for pair in body["frames"]]
        _check_sampled(collection, frames)
        kind, what = LabelAction.Kind.LABEL_FRAMES, f"{len(frames)} frame(s)"
    if body.get("with_copies"):
        asked = len(frames)
        try:
            frames = labelling.with_copies(collection, frames)
        except labelling.LabelError as error:
            raise Conflict(str(error)) from None
        what += f" and {len(frames) - asked} frame(s) of their copies"
    try:
        action = labelling.apply(collection, frames, name, kind,
                                 f"labelled {what} as {name!r}" if name is not None else f"unlabelled {what}",
                                 request.user)
    except labelling.LabelError as error:
        raise exceptions.ValidationError({"label": [str(error)]}) from None
    return Response(ActionSchema(action).data)


@extend_schema(request=NO_PARAMETERS, responses={200: ActionSchema, 404: NOT_FOUND,
                                        409: error_response("Nothing to undo, or it can no longer be undone.")})
@api_view(["POST"])
def undo(request, pk):
    """Undo the collection's last label action, merge or split not undone yet."""
    collection = collection_or_404(pk)
    json_body(request)
    try:
        action = labelling.undo(collection, request.user)
    except labelling.LabelError as error:
        raise Conflict(str(error)) from None
    if action is None:
        raise Conflict("there is nothing to undo")
    return Response(ActionSchema(action).data)


class ExportQuery(QuerySerializer):
    format = serializers.ChoiceField(choices=["csv", "json"], required=False, default="csv")


@extend_schema(parameters=[ExportQuery], responses={(200, "text/csv"): OpenApiResponse(
    description="source,timestamp,label,source_id,frame: one row per labelled frame."), 404: NOT_FOUND})
@api_view(["GET"])
def export_labels(request, pk):
    """Every labelled frame, as CSV (default) or JSON."""
    import io
    import json

    collection = collection_or_404(pk)
    as_json = validated_query(request, ExportQuery)["format"] == "json"
    rows = labelling.export_rows(collection)
    if as_json:
        return HttpResponse(json.dumps(rows, indent=1), content_type="application/json")
    out = io.StringIO()
    labelling.write_table(rows, out, as_json=False)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="labels-{collection.pk}.csv"'
    return response


@extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary", "description": "CSV (source,timestamp,label) or JSON."}},
    "required": ["file"]}}, responses={200: inline_serializer("Imported", {
        "labelled": serializers.IntegerField(), "skipped": inline_serializer("SkippedRow", {
            "line": serializers.IntegerField(), "source": serializers.CharField(),
            "timestamp": serializers.CharField(allow_null=True), "reason": serializers.CharField()}, many=True)}),
        400: error_response("Not a CSV or JSON file of labels."), 404: NOT_FOUND})
@api_view(["POST"])
@parser_classes([MultiPartParser])
def import_labels(request, pk):
    """Apply a file of labels: CSV with the columns source,timestamp,label (source: the file's
    path or name; the timestamp picks the nearest sampled frame; photos use 0), or a JSON list
    of such objects. Rows for unknown files or times are listed and skipped."""
    collection = collection_or_404(pk)
    upload = request.FILES.get("file")
    if upload is None:
        raise exceptions.ValidationError({"file": ["send the file as the form field `file`"]})
    if upload.size > IMPORT_MAX_BYTES:
        raise exceptions.ValidationError({"file": [f"at most {IMPORT_MAX_BYTES // 2**20} MB"]})
    try:
        rows = labelling.read_table(upload, upload.name or "the file")
    except labelling.LabelError as error:
        raise exceptions.ValidationError({"file": [str(error)]}) from None
    labelled, skipped = labelling.import_rows(collection, rows, request.user,
                                              upload.name or "the file")
    return Response({"labelled": labelled,
                     "skipped": [{**row, "timestamp": None if row["timestamp"] is None else str(row["timestamp"])}
                                 for row in skipped]})
