"""JSON API of the map: its state, the frame under a point, a video's path, similar and
most dissimilar clips. Everything is read from the collection's published map
(explorer/served_maps.py); ids and numbers are the only inputs, so no parameter reaches a file."""
import math
from pathlib import Path

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from explorer.api import JobSerializer, SourceSerializer
from explorer.api_errors import error_response
from explorer.api_params import INT64_MAX, QueryBooleanField, QuerySerializer, validated_query
from explorer.models import Collection, Job, Source
from explorer.served_copies import cells_without_copies, copies_for, copy_of_json, original_of
from explorer.served_maps import no_map_reason, require_snapshot, snapshot
from workers.pipeline.tiles import TILE_HEIGHT, TILE_WIDTH

MAX_ZOOM = 30  # past any map's deepest level (tiles.py: a few levels past one frame per cell)


class FiniteFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("must be a finite number")
        return value


def _source_id():
    return serializers.IntegerField(min_value=1, max_value=INT64_MAX)


def _frame_number():
    return serializers.IntegerField(min_value=0, max_value=INT64_MAX, help_text="Frame number in the source.")


class PointQuery(QuerySerializer):
    x = FiniteFloatField(min_value=-1.0, max_value=1.0, help_text="Map x, -1 (left) to 1.")
    y = FiniteFloatField(min_value=-1.0, max_value=1.0, help_text="Map y, -1 (bottom) to 1.")
    zoom = serializers.IntegerField(min_value=0, max_value=MAX_ZOOM,
                                    help_text="Zoom level whose thumbnails are shown (a map has 0 to its max_zoom).")
    hide_copies = QueryBooleanField(required=False, default=False,
                                    help_text="true: as the map is drawn with copies hidden (its copies.tile_url).")


class FrameQuery(QuerySerializer):
    source = _source_id()
    frame = _frame_number()


class SourceQuery(QuerySerializer):
    source = _source_id()


class SimilarQuery(FrameQuery):
    seconds = FiniteFloatField(required=False, min_value=0.1, max_value=600.0,
                               help_text="Length of the clip around the frame (default: CLIP_SECONDS).")
    top = serializers.IntegerField(required=False, min_value=1, max_value=50, default=10)
    exclude_source = QueryBooleanField(required=False, default=False,
                                       help_text="true: only clips of other videos than the frame's own.")


class FrameSchema(serializers.Serializer):
    row = serializers.IntegerField(help_text="Row of the frame in this map version.")
    source = serializers.IntegerField()
    frame = serializers.IntegerField(help_text="Frame number in the video.")
    position = serializers.IntegerField(help_text="Index in the source's frame store (/frames/SOURCE/POSITION.jpg).")
    time = serializers.FloatField(help_text="Seconds from the start of the video.")
    x = serializers.FloatField()
    y = serializers.FloatField()
    image = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    video = serializers.CharField(help_text="The source file, with Range support for seeking.")


class CopyOfSchema(serializers.Serializer):
    frame = FrameSchema(help_text="The frame of the more original file this one shows.")
    kind = serializers.CharField(help_text="near-duplicate, copy, contained or partial (see the duplicates API).")
    score = serializers.FloatField(allow_null=True)


class FrameDetailSchema(FrameSchema):
    file = SourceSerializer(allow_null=True, help_text=(
        "The source file: where it is and what it is, as /api/sources/ID/ gives it (null once removed)."))
    copy_of = CopyOfSchema(allow_null=True, help_text="When this frame copies a frame of a more original file.")


class PointSchema(FrameDetailSchema):
    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4,
                                help_text="Where its thumbnail is drawn at that zoom: x min, y min, x max, y max "
                                          "(map coordinates, y up).")


class ClipSchema(serializers.Serializer):
    source = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    video = serializers.CharField()
    start = serializers.FloatField()
    stop = serializers.FloatField()
    score = serializers.FloatField(allow_null=True, help_text="1 = identical, 0 = no closer than chance.")
    frames = FrameSchema(many=True)
    copy = serializers.BooleanField(required=False, help_text=(
        "Similar clips: its file is in the same group of copies as the clicked frame's."))


NOT_FOUND = OpenApiResponse(description="Unknown collection, or nothing at that place.")
NO_MAP = error_response("The collection has no map yet: `detail` says what is running.")


def _collection(pk):
    # with its detection of copies: what the hover path asks of it costs no other query
    return get_object_or_404(Collection.objects.select_related("duplicates"), pk=pk)


def _info(pk, source):
    return {"name": Path(source.path).name, "kind": source.kind, "video": reverse("source-file", args=[pk])}


def source_info(ids):
    """name, kind and video URL of each source id."""
    return {pk: _info(pk, source) for pk, source in Source.objects.in_bulk(list(set(ids))).items()}


def frame_detail(current, row, collection):
    """A frame as the point and frame endpoints answer it: with its source file's details and
    what it copies (one query for both files: a hover asks for it)."""
    found = copies_for(collection, current.version)
    original = original_of(found, row)
    pk = int(current.index["source"][row])
    sources = Source.objects.in_bulk([pk] if original is None else [pk, int(current.index["source"][original])])
    info = {source_pk: _info(source_pk, source) for source_pk, source in sources.items()}
    copy_of = (None if original is None
               else copy_of_json(found, current, row, original, frame_json(current, original, info)))
    source = sources.get(pk)
    return {**frame_json(current, row, info), "file": None if source is None else SourceSerializer(source).data,
            "copy_of": copy_of}


def frame_json(current, row, info):
    described = current.describe(row)
    described["image"] = reverse("frame-image", args=[described["source"], described["position"]])
    return {**described, **info.get(described["source"], {"name": "(removed)", "kind": "", "video": ""})}


def _clip(current, rows, score, info):
    frames = [frame_json(current, row, info) for row in rows]
    return {"source": frames[0]["source"], "name": frames[0]["name"], "kind": frames[0]["kind"],
            "video": frames[0]["video"], "start": frames[0]["time"], "stop": frames[-1]["time"],
            "score": score, "frames": frames}


@extend_schema(responses={200: inline_serializer("MapState", {
    "ready": serializers.BooleanField(), "status": serializers.CharField(),
    "version": serializers.CharField(allow_null=True), "frames": serializers.IntegerField(),
    "max_zoom": serializers.IntegerField(),
    "tile_url": serializers.CharField(help_text="{z}/{x}/{y}{r}.jpg; {r} is empty, or @2x for twice the pixels."),
    "tile_size": serializers.ListField(child=serializers.IntegerField()),
    "clip_seconds": serializers.FloatField(), "random_weights": serializers.BooleanField(),
    "copies": inline_serializer("MapCopies", {
        "detection": serializers.IntegerField(), "copied_frames": serializers.IntegerField(),
        "tile_url": serializers.CharField(help_text="The tiles with the copies left out: one frame of each group.")},
        allow_null=True, required=False, help_text="Copies found in this map (null: none, or not looked for)."),
    "extent": serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4,
                                    help_text="Where the frames are: x min, y min, x max, y max."),
    "jobs": JobSerializer(many=True)}), 404: NOT_FOUND})
@api_view(["GET"])
def map_state(request, pk):
    """The collection's map: whether there is one yet, how to fetch its tiles, and the jobs
    still running on the collection (with their progress)."""
    collection = _collection(pk)
    current = snapshot(collection)
    jobs = JobSerializer(collection.jobs.exclude(status__in=Job.FINISHED), many=True).data
    state = {"ready": current is not None, "jobs": jobs, "tile_size": [TILE_WIDTH, TILE_HEIGHT],
             "random_weights": bool(collection.embedding.get("random_weights"))}
    if current is None:
        return Response({**state, "status": no_map_reason(collection), "version": None, "frames": 0,
                         "max_zoom": 0, "tile_url": "", "clip_seconds": 0.0, "extent": [-1.0, -1.0, 1.0, 1.0]})
    # {r}: Leaflet's "@2x" on high-DPI screens (explorer/urls.py), "" elsewhere.
    tile_url = reverse("tile", args=[collection.pk, current.version, 0, 0, 0]).replace("/0/0/0.jpg",
                                                                                       "/{z}/{x}/{y}{r}.jpg")
    found = copies_for(collection, current.version)
    copies = None
    if found is not None and collection.duplicates.copied_frames:
        detection = found.details["detection"]
        copies = {"detection": detection, "copied_frames": collection.duplicates.copied_frames,
                  "tile_url": reverse("tile-no-copies", args=[collection.pk, current.version, detection, 0, 0, 0])
                  .replace("/0/0/0.jpg", "/{z}/{x}/{y}{r}.jpg")}
    return Response({**state, "status": f"map of {len(current)} frames", "version": current.version,
                     "frames": len(current), "max_zoom": current.grid.max_zoom, "tile_url": tile_url,
                     "clip_seconds": current.clip_seconds, "extent": [round(v, 5) for v in current.extent],
                     "copies": copies})


@extend_schema(parameters=[PointQuery], responses={200: PointSchema, 404: NOT_FOUND, 409: NO_MAP})
@api_view(["GET"])
def map_point(request, pk):
    """The frame drawn at a point of the map at a zoom level (what a hover or a click hits):
    where it is on the map, its time, image and video, and the box its thumbnail fills."""
    collection = _collection(pk)
    current = require_snapshot(collection)
    params = validated_query(request, PointQuery)
    if params["zoom"] > current.grid.max_zoom:
        raise NotFound(f"nothing is drawn at zoom {params['zoom']}: this map has zoom levels 0 to "
                       f"{current.grid.max_zoom}")
    cells = current.cells
    found = copies_for(collection, current.version) if params["hide_copies"] else None
    if found is not None:
        cells = cells_without_copies(current, found)
    hit = cells.placement_at(params["x"], params["y"], params["zoom"])
    if hit is None:
        raise NotFound("no frame is drawn there")
    row, box = hit
    return Response({**frame_detail(current, row, collection), "box": box})


@extend_schema(parameters=[FrameQuery], responses={200: FrameDetailSchema, 404: NOT_FOUND, 409: NO_MAP})
@api_view(["GET"])
def map_frame(request, pk):
    """A given frame of a source: where it is on the map, its time, image and video, and its file."""
    collection = _collection(pk)
    current = require_snapshot(collection)
    params = validated_query(request, FrameQuery)
    row = current.row_of(params["source"], params["frame"])
    if row is None:
        raise NotFound(f"frame {params['frame']} of source {params['source']} is not on this map")
    return Response(frame_detail(current, row, collection))


@extend_schema(parameters=[SourceQuery], responses={200: inline_serializer("Path", {
    "source": serializers.IntegerField(), "name": serializers.CharField(),
    "frames": serializers.ListField(child=serializers.IntegerField()),
    "times": serializers.ListField(child=serializers.FloatField()),
    "points": serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))}),
    404: NOT_FOUND, 409: NO_MAP})
@api_view(["GET"])
def map_path(request, pk):
    """A source's frames on the map in time order: its path across the map."""
    current = require_snapshot(_collection(pk))
    source = validated_query(request, SourceQuery)["source"]
    path = current.path(source)
    if path is None:
        raise NotFound(f"source {source} is not on this map")
    info = source_info([source]).get(source, {"name": "(removed)"})
    return Response({"source": source, "name": info["name"], "frames": path["frames"].tolist(),
                     "times": [round(t, 3) for t in path["times"].tolist()],
                     "points": [[round(x, 5), round(y, 5)] for x, y in path["xy"].tolist()]})


@extend_schema(parameters=[SimilarQuery], responses={200: inline_serializer("SimilarClips", {
    "query": ClipSchema(), "clips": ClipSchema(many=True), "seconds": serializers.FloatField()}),
    404: NOT_FOUND, 409: NO_MAP})
@api_view(["GET"])
def map_similar(request, pk):
    """The clips of the whole collection whose frames best follow the clip around a frame,
    best first, each with its score (1 = identical, 0 = no closer than chance)."""
    collection = _collection(pk)
    current = require_snapshot(collection)
    params = validated_query(request, SimilarQuery)
    row = current.row_of(params["source"], params["frame"])
    if row is None:
        raise NotFound(f"frame {params['frame']} of source {params['source']} is not on this map")
    seconds = params.get("seconds") or current.clip_seconds
    start, stop = current.clip_at(row, seconds)
    found = current.similar(row, seconds=seconds, top=params["top"], other_sources_only=params["exclude_source"])
    info = source_info([params["source"]] + [clip["source"] for clip in found])
    copies = copies_for(collection, current.version)
    group = copies.group_of(params["source"]) if copies else None

    def marked(clip):  # a copy of the clicked frame's file, or of a file it copies
        return {**clip, "copy": group is not None and clip["source"] != params["source"]
                and copies.group_of(clip["source"]) == group}

    return Response({"seconds": seconds, "query": _clip(current, range(start, stop), 1.0, info),
                     "clips": [marked(_clip(current, clip["rows"], round(clip["score"], 4), info)) for clip in found]})


@extend_schema(responses={200: inline_serializer("DissimilarClips", {"clips": ClipSchema(many=True)}),
                          404: NOT_FOUND, 409: NO_MAP})
@api_view(["GET"])
def map_dissimilar(request, pk):
    """A handful of clips chosen to be as different from each other as possible."""
    current = require_snapshot(_collection(pk))
    clips = current.dissimilar()
    info = source_info([int(current.index["source"][rows[0]]) for rows in clips])
    return Response({"clips": [_clip(current, rows, None, info) for rows in clips]})
