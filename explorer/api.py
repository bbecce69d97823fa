"""JSON API: collections, sources and jobs. The OpenAPI schema is generated from
these views by drf-spectacular and served at /api/openapi.json."""
from pathlib import Path

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from explorer.jobs import start_ingest, start_training
from explorer.models import Collection, Job, Source
from explorer.sampling import sampling_params


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
            # resolve() follows symlinks and '..', so neither can escape a root.
            path = Path(given).expanduser().resolve()
            if not any(path == root or root in path.parents for root in roots):
                raise serializers.ValidationError(
                    f"{given}: outside the folders this server may ingest from "
                    f"({', '.join(str(r) for r in roots)})")
            if not path.exists():
                raise serializers.ValidationError(f"{given}: no such file or folder")
            allowed.append(str(path))
        return allowed


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def _with_counts(queryset):
    from django.db.models import Count, Sum

    return queryset.annotate(source_count=Count("sources"), frame_count=Sum("sources__frame_count"))


class CollectionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = CollectionSerializer
    queryset = _with_counts(Collection.objects.all())

    @extend_schema(request=IngestRequestSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def ingest(self, request, pk=None):
        """Start ingesting files and folders into this collection; poll the returned job."""
        collection = self.get_object()
        body = IngestRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            job = start_ingest(collection, body.validated_data["paths"], embed=body.validated_data["embed"],
                               roots=settings.MEDIA_ROOTS)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def train(self, request, pk=None):
        """Refit PCA and retrain the autoencoder on the whole collection, then re-place every frame.
        The current map keeps being served until the new one is ready."""
        collection = self.get_object()
        if request.content_type != "application/json":
            # A form or plain-text POST from another site cannot set this: no cross-site retraining.
            return Response({"detail": "send Content-Type: application/json"},
                            status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
        try:
            with transaction.atomic():
                job = start_training(collection)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


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


def _int_param(name, value):
    try:
        return int(value)
    except ValueError:
        raise serializers.ValidationError({name: f"{value!r} is not a whole number"}) from None
