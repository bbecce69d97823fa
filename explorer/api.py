"""JSON API: collections, sources and jobs. The OpenAPI schema is generated from
these views by drf-spectacular and served at /api/openapi.json."""
from pathlib import Path

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from explorer.jobs import cancel, start_ingest, start_poster, start_training
from explorer.models import Collection, Job, Poster, Source
from explorer.sampling import sampling_params
from workers.pipeline.files import is_inside


class CollectionSerializer(serializers.ModelSerializer):
    source_count = serializers.IntegerField(read_only=True)
    frame_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Collection
        fields = ["id", "name", "sampling", "embedding", "created_at", "source_count", "frame_count"]
        read_only_fields = ["sampling", "embedding", "created_at"]

    def create(self, validated_data):
        return Collection.objects.create(sampling=sampling_params().as_dict(), **validated_data)


class SourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Source
        fields = ["id", "collection", "path", "kind", "status", "progress", "error", "warning", "checksum",
                  "size", "duration", "fps", "width", "height", "frame_count", "created_at"]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "collection", "kind", "params", "stage", "status", "progress", "message", "error",
                  "skipped", "created_at", "started_at", "finished_at", "updated_at"]
        read_only_fields = fields


class IngestRequestSerializer(serializers.Serializer):
    paths = serializers.ListField(child=serializers.CharField(), min_length=1,
                                  help_text="Files or folders, each inside one of the server's MEDIA_ROOTS.")
    embed = serializers.BooleanField(default=True, help_text="Go on to place the new frames on the map.")

    def validate_paths(self, paths):
        roots = settings.MEDIA_ROOTS
        if not roots:
            raise serializers.ValidationError(
                "this server allows no folders to be ingested from the web: set MEDIA_ROOTS")
        allowed = []
        for given in paths:
            path = Path(given).expanduser().resolve()
            if not is_inside(path, roots):
                raise serializers.ValidationError(
                    f"{given}: outside the folders this server may ingest from "
                    f"({', '.join(str(r) for r in roots)})")
            if not path.exists():
                raise serializers.ValidationError(f"{given}: no such file or folder")
            allowed.append(str(path))
        return allowed


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


class PosterRequestSerializer(serializers.Serializer):
    """A poster of a region of the map (see workers/pipeline/posters.py)."""

    collection = serializers.IntegerField()
    centre_x = serializers.FloatField(help_text="Centre of the window on the map (-1 to 1).")
    centre_y = serializers.FloatField()
    window_width = serializers.FloatField(help_text="Width of the window in map units (the map is 2 wide).")
    columns = serializers.IntegerField()
    rows = serializers.IntegerField()
    tile_width = serializers.IntegerField(default=534, help_text="Pixels per cell (unless width_mm is set).")
    tile_height = serializers.IntegerField(default=300)
    rotation = serializers.FloatField(default=0.0, help_text="Degrees, counter-clockwise.")
    format = serializers.CharField(default="png", help_text="png, tiff or pdf.")
    quality = serializers.CharField(default="preview", help_text="preview (frame store) or print (source files).")
    empty = serializers.CharField(default="blank", help_text="Cells with no frame near: blank, or nearest.")
    width_mm = serializers.FloatField(required=False, allow_null=True, default=None,
                                      help_text="Physical width; with dpi it sets the pixel size.")
    dpi = serializers.FloatField(default=300.0)

    def spec_and_collection(self):
        from django.shortcuts import get_object_or_404

        self.is_valid(raise_exception=True)
        params = dict(self.validated_data)
        collection = get_object_or_404(Collection, pk=params.pop("collection"))
        return collection, params


def started(serializer, what):
    """The answer to a request that starts a job: 202 with the new job (or poster), or 200
    with the identical one that was queued or running already."""
    return {202: OpenApiResponse(serializer, description=f"Started: the new {what}; poll its job."),
            200: OpenApiResponse(serializer, description=(
                f"An identical {what} (same kind, collection and parameters) was queued or running already: "
                "that one, and no new job."))}


def _started_response(serializer, started_object):
    return Response(serializer(started_object).data,
                    status=status.HTTP_200_OK if started_object.reused else status.HTTP_202_ACCEPTED)


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def _with_counts(queryset):
    from django.db.models import Count, Sum

    return queryset.annotate(source_count=Count("sources"), frame_count=Sum("sources__frame_count"))


class CollectionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = CollectionSerializer
    queryset = _with_counts(Collection.objects.all())

    @extend_schema(request=IngestRequestSerializer, responses=started(JobSerializer, "ingest job"))
    @action(detail=True, methods=["post"])
    def ingest(self, request, pk=None):
        """Start ingesting files and folders into this collection; poll the returned job."""
        collection = self.get_object()
        body = IngestRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = start_ingest(collection, body.validated_data["paths"], embed=body.validated_data["embed"],
                           roots=settings.MEDIA_ROOTS)
        return _started_response(JobSerializer, job)

    @extend_schema(request=None, responses=started(JobSerializer, "training job"))
    @action(detail=True, methods=["post"])
    def train(self, request, pk=None):
        """Refit PCA and retrain the autoencoder on the whole collection, then re-place every frame.
        The current map keeps being served until the new one is ready."""
        collection = self.get_object()
        refused = _unless_json(request)
        if refused:
            return refused
        try:
            job = start_training(collection)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return _started_response(JobSerializer, job)


class PosterViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PosterSerializer
    pagination_class = Pagination

    def get_queryset(self):
        queryset = Poster.objects.select_related("job", "collection")
        collection = self.request.query_params.get("collection")
        if collection:
            queryset = queryset.filter(collection_id=_int_param("collection", collection))
        return queryset

    @extend_schema(request=PosterRequestSerializer, responses=started(PosterSerializer, "poster"))
    def create(self, request):
        """Render a poster of a region of the collection's map; poll its job. Impossible
        parameters get 400 with every reason."""
        from workers.pipeline.posters import PosterError

        collection, params = PosterRequestSerializer(data=request.data).spec_and_collection()
        try:
            poster = start_poster(collection, params)
        except PosterError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return _started_response(PosterSerializer, poster)

    @extend_schema(request=PosterRequestSerializer, responses={200: dict})
    @action(detail=False, methods=["post"])
    def plan(self, request):
        """What a poster would be, without rendering it: its size, and which frame each cell
        would show (up to 2,500 cells), for a preview of the grid."""
        from django.urls import reverse

        from explorer.maps import snapshot
        from workers.pipeline.posters import PosterError, PosterSpec, assign_frames

        collection, params = PosterRequestSerializer(data=request.data).spec_and_collection()
        current = snapshot(collection)
        try:
            spec = PosterSpec.from_dict(params).validate(settings.POSTER_MAX_PIXELS)
            if current is None:
                raise PosterError(f"collection {collection.name!r} has no map yet")
        except PosterError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        assignment = assign_frames(spec, current.layout)
        cells = None
        if assignment.size <= 2500:
            def cell(row):
                if row < 0:
                    return None
                frame = current.describe(row)
                return {"source": frame["source"], "frame": frame["frame"], "time": frame["time"],
                        "image": reverse("frame-image", args=[frame["source"], frame["position"]])}
            cells = [[cell(int(row)) for row in line] for line in assignment]
        filled = int((assignment >= 0).sum())
        return Response({"width": spec.pixel_size[0], "height": spec.pixel_size[1],
                         "size_mm": [round(v, 1) for v in spec.size_mm], "filled": filled,
                         "blank": int(assignment.size - filled), "corners": spec.corners().tolist(),
                         "cells": cells})

    @extend_schema(request=None, responses=started(PosterSerializer, "poster"))
    @action(detail=True, methods=["post"])
    def again(self, request, pk=None):
        """Render this poster again from its saved parameters, on the collection's current map."""
        from workers.pipeline.posters import PosterError

        poster = self.get_object()
        refused = _unless_json(request)
        if refused:
            return refused
        try:
            again = start_poster(poster.collection, poster.params, again=poster.pk)
        except PosterError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return _started_response(PosterSerializer, again)


class SourceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SourceSerializer
    pagination_class = Pagination

    def get_queryset(self):
        queryset = Source.objects.all()
        collection = self.request.query_params.get("collection")
        if collection:
            queryset = queryset.filter(collection_id=_int_param("collection", collection))
        return queryset


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = JobSerializer
    pagination_class = Pagination

    def get_queryset(self):
        queryset = Job.objects.all()
        params = self.request.query_params
        if params.get("collection"):
            queryset = queryset.filter(collection_id=_int_param("collection", params["collection"]))
        if params.get("active") in ("1", "true"):
            queryset = queryset.exclude(status__in=Job.FINISHED)
        return queryset

    @extend_schema(request=None, responses={
        200: OpenApiResponse(JobSerializer, description="Cancelled: the job, with status `cancelled`."),
        409: OpenApiResponse(description="The job had finished already; nothing was changed."),
    })
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running job. What it has not begun is never run, a running stage
        stops at its next progress report (within seconds), and the map being served stays as
        it is. Files it had not sampled yet stay pending for the next ingest."""
        job = self.get_object()
        refused = _unless_json(request)
        if refused:
            return refused
        cancelled = cancel(job)
        job.refresh_from_db()
        if not cancelled:
            return Response({"detail": f"job {job.pk} has finished already ({job.status})"},
                            status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job).data)


def _unless_json(request):
    """415 for a bodiless POST that is not JSON: a form or plain-text POST from another site
    cannot set this content type, so no other site can start work here."""
    if request.content_type != "application/json":
        return Response({"detail": "send Content-Type: application/json"},
                        status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
    return None


def _int_param(name, value):
    try:
        return int(value)
    except ValueError:
        raise serializers.ValidationError({name: f"{value!r} is not a whole number"}) from None
