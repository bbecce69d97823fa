"""JSON API of posters: rendering a region of the map (a job: workers/stages/render.py), its
plan before rendering, rendering an earlier poster again, and the list of posters. The file
is served at /posters/ID/file (explorer/file_views.py)."""
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from explorer.api import NO_PARAMETERS, JobSerializer, failed_sources, json_body, listed, started, started_response
from explorer.api_errors import Conflict, error_response
from explorer.api_params import INT64_MAX, CollectionFilter, ExactFields, StrictFloatField, StrictIntegerField
from explorer.jobs import NotReady, current_map, poster_spec, start_poster
from explorer.models import Collection, Poster
from workers.pipeline.posters import EMPTY_CELLS, FORMATS, LIMITS, MODES, QUALITIES

PLAN_PREVIEW_CELLS = 2500  # a plan solves the assignment in the request only up to this many cells
NO_MAP = error_response("The collection has no map yet.")


def _limited(field_class, name, **kwargs):
    """A poster parameter within the range PosterSpec accepts (workers/pipeline/posters.py)."""
    low, high = LIMITS[name]
    return field_class(min_value=low, max_value=high, **kwargs)


class PosterSerializer(serializers.ModelSerializer):
    job = JobSerializer(read_only=True)
    download = serializers.SerializerMethodField(help_text="The file, once rendered.")
    size_mm = serializers.SerializerMethodField(help_text="Width and height on paper at the poster's dpi.")

    class Meta:
        model = Poster
        fields = ["id", "collection", "params", "map_version", "width", "height", "size_mm", "file_size", "cells",
                  "created_at", "job", "download"]
        read_only_fields = fields

    def get_download(self, poster) -> str | None:
        from django.urls import reverse

        return reverse("poster-file", args=[poster.pk]) if poster.file_size else None

    def get_size_mm(self, poster) -> list[float]:
        from workers.pipeline.posters import PosterSpec

        return [round(v, 1) for v in PosterSpec.from_dict(poster.params).size_mm]


class PosterRequestSerializer(ExactFields, serializers.Serializer):
    """A poster of a region of the map (see workers/pipeline/posters.py)."""

    collection = StrictIntegerField(min_value=1, max_value=INT64_MAX)
    centre_x = _limited(StrictFloatField, "centre_x",
                        help_text="Centre of the window on the map (which spans -1 to 1).")
    centre_y = _limited(StrictFloatField, "centre_y")
    window_width = _limited(StrictFloatField, "window_width",
                            help_text="Width of the window in map units (the map is 2 wide).")
    columns = _limited(StrictIntegerField, "columns",
                       help_text="Cells across; columns x rows may be at most POSTER_MAX_CELLS.")
    rows = _limited(StrictIntegerField, "rows")
    tile_width = _limited(StrictIntegerField, "tile_width", default=534,
                          help_text="Pixels per cell (unless width_mm is set).")
    tile_height = _limited(StrictIntegerField, "tile_height", default=300)
    rotation = _limited(StrictFloatField, "rotation", default=0.0, help_text="Degrees, counter-clockwise.")
    format = serializers.ChoiceField(FORMATS, default="png")
    quality = serializers.ChoiceField(QUALITIES, default="preview",
                                      help_text="preview (frame store) or print (source files).")
    empty = serializers.ChoiceField(EMPTY_CELLS, default="blank",
                                    help_text="Cells with no frame near: blank, or the nearest frame still unused.")
    width_mm = _limited(StrictFloatField, "width_mm", required=False, allow_null=True, default=None,
                        help_text="Physical width; with dpi it sets the pixel size.")
    dpi = _limited(StrictFloatField, "dpi", default=300.0)
    mode = serializers.ChoiceField(MODES, default="grid", help_text=(
        "grid: a frame per cell; scatter: the frames' cut-outs (their plain backgrounds removed) at their exact "
        "places on the map, each in a box of one cell's size."))
    overlap = _limited(StrictFloatField, "overlap", default=0.1, help_text=(
        "Scatter: how much of a cut-out's box those drawn above it may hide; a frame that would be hidden more "
        "is left out (1 keeps every frame)."))
    background = serializers.RegexField(r"\A(white|transparent|#[0-9a-fA-F]{6})\Z", default="white", help_text=(
        "white, or for a scatter poster transparent or a colour as #rrggbb."))


def _poster_request(request):
    """The collection (404 if there is none) and the poster parameters of the request."""
    from django.shortcuts import get_object_or_404

    params = dict(json_body(request, PosterRequestSerializer))
    return get_object_or_404(Collection, pk=params.pop("collection")), params


class PlanCellSerializer(serializers.Serializer):
    source = serializers.IntegerField()
    frame = serializers.IntegerField(help_text="Frame number in the video.")
    time = serializers.FloatField(help_text="Seconds from the start of the video.")
    image = serializers.CharField()


@extend_schema_field(PlanCellSerializer(allow_null=True))
class PlanCellField(serializers.JSONField):
    """A cell of a plan: the frame it shows, or null for a blank cell."""


class PosterPlanSerializer(serializers.Serializer):
    width = serializers.IntegerField(help_text="Pixels.")
    height = serializers.IntegerField()
    size_mm = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2)
    cell_count = serializers.IntegerField(help_text="columns x rows.")
    filled = serializers.IntegerField(help_text="Cells that show a frame: exactly, or at most (see `exact`); of a "
                                                "scatter poster, the frames in the window.")
    blank = serializers.IntegerField()
    exact = serializers.BooleanField(help_text="Whether the frames were assigned to the cells (`cells` is given), "
                                               "or `filled` only counts the cells with a frame within reach.")
    corners = serializers.ListField(child=serializers.ListField(child=serializers.FloatField(), min_length=2,
                                                                max_length=2), min_length=4, max_length=4)
    cells = serializers.ListField(
        child=serializers.ListField(child=PlanCellField()), allow_null=True,
        help_text=f"Row by row, the frame each cell shows (null: blank); for up to {PLAN_PREVIEW_CELLS:,} cells.")
    preview = serializers.CharField(allow_null=True, help_text="Why `cells` was left out, if it was.")


@extend_schema_view(list=extend_schema(parameters=[CollectionFilter]))
class PosterViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PosterSerializer

    def get_queryset(self):
        return listed(self, Poster.objects.select_related("job", "collection").prefetch_related(
            failed_sources("job__sources")), CollectionFilter)

    @extend_schema(request=PosterRequestSerializer, responses=started(PosterSerializer, "poster", {409: NO_MAP}))
    def create(self, request):
        """Render a poster of a region of the collection's map; poll its job. Impossible
        parameters get 400 with every reason."""
        from workers.pipeline.posters import PosterError

        collection, params = _poster_request(request)
        try:
            poster = start_poster(collection, params)
        except PosterError as exc:
            raise exceptions.ValidationError(str(exc)) from None  # the fields together: no one field
        except NotReady as exc:
            raise Conflict(str(exc)) from None
        return started_response(PosterSerializer, poster)

    @extend_schema(request=PosterRequestSerializer, responses={200: PosterPlanSerializer, 409: NO_MAP})
    @action(detail=False, methods=["post"])
    def plan(self, request):
        """What a poster would be, without rendering it: its size, and for a preview which
        frame each cell would show. Solving that assignment grows fast with the cells, so
        larger posters get only how many cells at most show a frame."""
        from django.urls import reverse

        from workers.pipeline.posters import PosterError, assign_frames, cells_in_reach, frames_in_window

        collection, params = _poster_request(request)
        try:
            spec = poster_spec(params)
            current = current_map(collection)
        except PosterError as exc:
            raise exceptions.ValidationError(str(exc)) from None  # the fields together: no one field
        except NotReady as exc:
            raise Conflict(str(exc)) from None
        cell_count = spec.columns * spec.rows
        cells, preview = None, None
        if spec.mode == "scatter":
            filled = frames_in_window(spec, current.layout)
            preview = (f"scatter: the cut-outs of up to {filled:,} frame(s) at their places on the map, each in a "
                       f"box of one cell; a frame hidden more than {spec.overlap:g} of its box, or whose cut-out is "
                       "empty, is left out")
        elif cell_count <= PLAN_PREVIEW_CELLS:
            assignment = assign_frames(spec, current.layout)

            def cell(row):
                if row < 0:
                    return None
                frame = current.describe(row)
                return {"source": frame["source"], "frame": frame["frame"], "time": frame["time"],
                        "image": reverse("frame-image", args=[frame["source"], frame["position"]])}
            cells = [[cell(int(row)) for row in line] for line in assignment]
            filled = int((assignment >= 0).sum())
        else:
            filled = cells_in_reach(spec, current.layout)
            preview = (f"{cell_count:,} cells: only posters of up to {PLAN_PREVIEW_CELLS:,} cells are previewed "
                       "cell by cell")
        return Response({"width": spec.pixel_size[0], "height": spec.pixel_size[1],
                         "size_mm": [round(v, 1) for v in spec.size_mm], "cell_count": cell_count,
                         "filled": filled, "blank": max(0, cell_count - filled), "exact": cells is not None,
                         "corners": spec.corners().tolist(), "cells": cells, "preview": preview})

    @extend_schema(request=NO_PARAMETERS, responses=started(PosterSerializer, "poster", {409: error_response(
        "The collection's current map or this server's limits no longer allow this poster: `detail` says why.")}))
    @action(detail=True, methods=["post"])
    def again(self, request, pk=None):
        """Render this poster again from its saved parameters, on the collection's current map."""
        from workers.pipeline.posters import PosterError

        poster = self.get_object()
        json_body(request)
        try:
            again = start_poster(poster.collection, poster.params, again=poster.pk)
        except (PosterError, NotReady) as exc:  # the request had no say: the state changed
            raise Conflict(str(exc)) from None
        return started_response(PosterSerializer, again)


