"""JSON API of copies: the collection's groups of near-duplicates, copies and contained clips
(with the aligned time ranges of each pair), and the exact copies the scan passed over; and
looking for them again with another threshold (a job: workers/stages/duplicates.py).
`report` is the one shape of a detection: the API, the report page and `manage.py duplicates`
all show it."""
from pathlib import Path

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from explorer.api import JobSerializer, json_body, started, started_response
from explorer.api_errors import Conflict, error_response, not_made_yet
from explorer.api_params import ExactFields, NumberedPageQuery, StrictFloatField, numbered_page, validated_query
from explorer.cluster_api import collection_or_404
from explorer.jobs import NotReady, start_duplicates
from explorer.map_api import FrameSchema, frame_json, source_info
from explorer.models import SameContent, Source
from explorer.served_copies import detection_files
from explorer.served_maps import snapshot

NOT_FOUND = OpenApiResponse(description="Unknown collection.")
NO_DETECTION = error_response("The collection has no map, or its copies were not looked for yet: `detail` says "
                              "what is running.")


def current_duplicates(collection):
    """(detection, its files, the map it was made from), or 409 saying what is missing."""
    detection = collection.duplicates
    if detection is None:
        raise not_made_yet(collection, "was not looked through for copies")
    current = snapshot(collection, detection.map_version)
    files = detection_files(detection)
    if current is None or files is None:
        raise Conflict(f"the copies of collection {collection.pk} were found in a map that is gone: "
                       "look for them again")
    return detection, files, current


def report(collection, query=None):
    """The current detection as the API answers it (see the Duplicates schema): a page of its
    groups and of its exact copies when `query` (a NumberedPageQuery's) says which, else all."""
    detection, files, current = current_duplicates(collection)
    exact_copies = _exact_copies(collection)
    page = pages = 1
    shown_groups, shown_exact = files.groups, exact_copies
    if query is not None:
        start, stop, pages = numbered_page(max(len(files.groups), len(exact_copies)), query,
                                           f"the copies of collection {collection.pk}")
        page, shown_groups, shown_exact = query["page"], files.groups[start:stop], exact_copies[start:stop]
    sources = Source.objects.in_bulk({f for group in shown_groups for f in group["members"]})
    info = source_info(list(sources))

    def member(pk):
        source = sources.get(pk)
        if source is None:
            return {"source": pk, "name": "(removed)", "path": "", "kind": "", "duration": None, "width": None,
                    "height": None}
        return {"source": pk, "name": Path(source.path).name, "path": source.path, "kind": source.kind,
                "duration": source.duration, "width": source.width, "height": source.height}

    def relation(found):
        return {**{key: found[key] for key in (
            "copy", "original", "kind", "score", "copy_start", "copy_stop", "original_start", "original_stop",
            "verified", "checked", "difference")},
            "copy_frame": frame_json(current, found["copy_row"], info) if found["copy_row"] is not None else None,
            "original_frame": (frame_json(current, found["original_row"], info)
                               if found["original_row"] is not None else None)}

    by_group = {}
    for found_relation in files.relations:
        by_group.setdefault(found_relation["group"], []).append(found_relation)
    groups = []
    for group in shown_groups:
        relations = [relation(r) for r in by_group.get(group["id"], [])]
        groups.append({"id": group["id"], "kind": relations[0]["kind"], "score": group["score"],
                       "representative": group["representative"],
                       "members": [member(pk) for pk in group["members"]], "relations": relations})
    return {"detection": detection.pk, "map_version": detection.map_version,
            "current_map": collection.embedding.get("map") == detection.map_version,
            "threshold": detection.threshold, "created_at": detection.created_at,
            "copied_frames": detection.copied_frames, "group_count": len(files.groups),
            "exact_count": len(exact_copies), "page": page, "pages": pages, "groups": groups, "exact": shown_exact}


def _exact_copies(collection):
    """The files the scan passed over as the same bytes as a source, by source."""
    exact = {}
    for source_id, path, source_path in SameContent.objects.filter(source__collection=collection).order_by(
            "source_id", "path").values_list("source_id", "path", "source__path"):
        if path == source_path:
            continue  # the original moved away and the source took its copy's path: not a copy of itself
        exact.setdefault(source_id, {"source": source_id, "path": source_path, "copies": []})["copies"].append(path)
    return list(exact.values())


class MemberSchema(serializers.Serializer):
    source = serializers.IntegerField()
    name = serializers.CharField()
    path = serializers.CharField()
    kind = serializers.CharField(help_text="video or photo.")
    duration = serializers.FloatField(allow_null=True)
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)


class RelationSchema(serializers.Serializer):
    copy = serializers.IntegerField(help_text="The source that copies the other.")
    original = serializers.IntegerField(help_text="The more original source (longer, then more pixels).")
    kind = serializers.ChoiceField(choices=["near-duplicate", "copy", "contained", "partial"], help_text=(
        "near-duplicate: two photos of one picture; copy: the whole of both; contained: the whole copy is "
        "inside the original; partial: a stretch of each."))
    score = serializers.FloatField(help_text="Calibrated: 0.5 is as likely a copy as not.")
    copy_start = serializers.FloatField(help_text="Seconds: the copy's copied stretch...")
    copy_stop = serializers.FloatField()
    original_start = serializers.FloatField(help_text="...shows the original from here...")
    original_stop = serializers.FloatField(help_text="...to here.")
    verified = serializers.IntegerField(help_text="Frame pairs seen to be the same picture.")
    checked = serializers.IntegerField(help_text="Frame pairs compared.")
    difference = serializers.FloatField(help_text="How different the verified pictures still are (0: none).")
    copy_frame = FrameSchema(allow_null=True)
    original_frame = FrameSchema(allow_null=True)


class GroupSchema(serializers.Serializer):
    id = serializers.IntegerField(help_text="0 is the largest group.")
    kind = serializers.CharField(help_text="The kind of its best relation.")
    score = serializers.FloatField()
    representative = serializers.IntegerField(help_text="The source kept when copies are hidden.")
    members = MemberSchema(many=True, help_text="Most original first.")
    relations = RelationSchema(many=True, help_text="Best first.")


class ExactSchema(serializers.Serializer):
    source = serializers.IntegerField()
    path = serializers.CharField()
    copies = serializers.ListField(child=serializers.CharField(), help_text="Files of the same bytes, not ingested.")


class DuplicatesRequest(ExactFields, serializers.Serializer):
    threshold = StrictFloatField(min_value=0.0, max_value=1.0, help_text=(
        "The least score called a copy (0.5: as likely a copy as not; higher misses more copies, lower calls "
        "more look-alikes copies)."))


@extend_schema(parameters=[NumberedPageQuery], responses={200: inline_serializer("Duplicates", {
    "detection": serializers.IntegerField(), "map_version": serializers.CharField(),
    "current_map": serializers.BooleanField(help_text="Made from the map being shown (false while it is remade)."),
    "threshold": serializers.FloatField(), "created_at": serializers.DateTimeField(),
    "copied_frames": serializers.IntegerField(help_text="Frames that copy a frame of a more original file."),
    "group_count": serializers.IntegerField(help_text="Groups in all pages."),
    "exact_count": serializers.IntegerField(help_text="Files with exact copies, in all pages."),
    "page": serializers.IntegerField(), "pages": serializers.IntegerField(help_text="Of groups and exact copies alike."),
    "groups": GroupSchema(many=True, help_text="This page's groups, largest first."),
    "exact": ExactSchema(many=True, help_text="This page's files with exact copies.")}), 404: NOT_FOUND, 409: NO_DETECTION},
    methods=["GET"], operation_id="duplicates_list")
@extend_schema(request=DuplicatesRequest, responses=started(JobSerializer, "duplicates job", {
    404: NOT_FOUND, 409: error_response("The collection has no map yet.")}), methods=["POST"],
    operation_id="duplicates_find")
@api_view(["GET", "POST"])
def duplicates(request, pk):
    """GET: a page of the collection's copies: groups (largest first) with their members (the
    kept one first) and each pair's aligned time ranges, and the exact copies the scan passed over.
    POST (editors): look for them again with another threshold."""
    collection = collection_or_404(pk)
    if request.method == "POST":
        try:
            return started_response(JobSerializer, start_duplicates(collection, json_body(request, DuplicatesRequest)
                                                                    ["threshold"]))
        except NotReady as error:
            raise Conflict(str(error)) from None
    return Response(report(collection, validated_query(request, NumberedPageQuery)))
