"""JSON API: collections, sources and jobs, and what the other API modules share (a list's
filters, request bodies, the answers of a request that starts a job). The OpenAPI schema is
generated from these views by drf-spectacular and served at /api/openapi.json."""
from pathlib import Path

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from explorer.api_errors import Conflict, error_response
from explorer.api_params import (
    ExactFields, JobFilter, SourceFilter, StrictBooleanField, StrictCharField, validated_query,
)
from explorer.jobs import NotReady, cancel, start_ingest, start_training
from explorer.models import COLLECTION_NAME, Collection, Job, Source
from explorer.sampling_settings import sampling_params
from workers.pipeline.allowed_folders import OutsideAllowedFolders, allowed_real_path


def listed(view, queryset, query_class):
    """The list's rows, narrowed by its query parameters; other actions take none."""
    if view.action != "list":
        return queryset
    query = validated_query(view.request, query_class)
    if "collection" in query:
        queryset = queryset.filter(collection_id=query["collection"])
    if query.get("search"):
        queryset = queryset.filter(path__icontains=query["search"]).order_by("path", "id")
    if query.get("active"):
        queryset = queryset.exclude(status__in=Job.FINISHED)
    return queryset


# A file or folder on the server, by its absolute path.
SERVER_PATH = RegexValidator(r"\A/[^\x00]*\Z", "an absolute path (from /), without NUL characters")


class CollectionSerializer(ExactFields, serializers.ModelSerializer):
    # Unique, but a name already taken is a conflict (409, see create), not a malformed request.
    name = StrictCharField(max_length=200, trim_whitespace=False, validators=[COLLECTION_NAME])
    source_count = serializers.IntegerField(read_only=True)
    frame_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Collection
        fields = ["id", "name", "sampling", "embedding", "created_at", "source_count", "frame_count"]
        read_only_fields = ["sampling", "embedding", "created_at"]

    def create(self, validated_data):
        return Collection.objects.create(sampling=sampling_params().as_dict(), **validated_data)


class SourceSerializer(serializers.ModelSerializer):
    folder = serializers.SerializerMethodField(help_text="The folder holding the file, on the server.")
    name = serializers.SerializerMethodField(help_text="The file's name.")

    class Meta:
        model = Source
        fields = ["id", "collection", "path", "folder", "name", "kind", "status", "progress", "error", "warning",
                  "checksum", "size", "duration", "fps", "width", "height", "frame_count", "created_at"]
        read_only_fields = fields

    def get_folder(self, source) -> str:
        return str(Path(source.path).parent)

    def get_name(self, source) -> str:
        return Path(source.path).name


class FailedFileSerializer(serializers.Serializer):
    source = serializers.IntegerField(help_text="The source's id (/api/sources/ID/).")
    path = serializers.CharField()
    error = serializers.CharField(help_text="Why it could not be read.")


def failed_sources(lookup="sources"):
    """The prefetch of each job's failed files (JobSerializer's `failed`): one query for a list."""
    return Prefetch(lookup, queryset=Source.objects.filter(status=Source.Status.FAILED).order_by("path"),
                    to_attr="failed_sources")


class JobSerializer(serializers.ModelSerializer):
    failed = serializers.SerializerMethodField(help_text="Every file of the job that failed, by path, with why.")

    class Meta:
        model = Job
        fields = ["id", "collection", "kind", "params", "stage", "status", "progress", "message", "error",
                  "skipped", "failed", "created_at", "started_at", "finished_at", "updated_at"]
        read_only_fields = fields
        extra_kwargs = {"skipped": {"help_text": "Every file passed over, by path, with why and its kind "
                                                 "(not_media and duplicate leave the job a success; unusable, "
                                                 "left_off_map and warning make it partial): "
                                                 "[{\"path\": ..., \"reason\": ..., \"kind\": ...}]."}}

    @extend_schema_field(FailedFileSerializer(many=True))
    def get_failed(self, job):
        found = getattr(job, "failed_sources", None)
        if found is None:
            found = job.sources.filter(status=Source.Status.FAILED).order_by("path")
        return [{"source": source.pk, "path": source.path, "error": source.error} for source in found]


class IngestRequestSerializer(ExactFields, serializers.Serializer):
    paths = serializers.ListField(child=StrictCharField(max_length=4096, validators=[SERVER_PATH]), min_length=1,
                                  max_length=1000,
                                  help_text="Files or folders, each inside one of the server's MEDIA_ROOTS.")
    embed = StrictBooleanField(default=True, help_text="Go on to place the new frames on the map.")


def allowed_paths(paths):
    """The given paths, resolved, when each lies inside MEDIA_ROOTS (403 otherwise) and
    exists (404 otherwise): a well-formed path the server will not or cannot read."""
    roots = settings.MEDIA_ROOTS
    if not roots:
        raise exceptions.PermissionDenied(
            {"paths": ["this server allows no folders to be ingested from the web: set MEDIA_ROOTS"]})
    allowed = []
    for given in paths:
        try:
            path = allowed_real_path(given, roots, "the folders this server may ingest from")
        except OutsideAllowedFolders as exc:
            raise exceptions.PermissionDenied({"paths": [f"{exc} ({', '.join(str(r) for r in roots)})"]}) from None
        try:
            found = path.exists()
        except OSError:  # a name too long for the file system
            found = False
        if not found:
            raise exceptions.NotFound({"paths": [f"{given}: no such file or folder"]})
        allowed.append(str(path))
    return allowed


# The body of an action that takes no parameters: an empty JSON object.
NO_PARAMETERS = {"application/json": {"type": "object", "additionalProperties": False,
                                      "description": "{}: this action takes no parameters."}}


def refuse_oversized(request, limit_mb, limit_name):
    """400 before the body is read when it says it is larger than an upload may be."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit_mb * 1024 * 1024 + 64 * 1024:  # the file and its multipart headers
        raise exceptions.ValidationError({"detail": f"the request is {length / 2**20:.1f} MB, over the limit of "
                                                    f"{limit_mb} MB for a file ({limit_name})"})


class NoParameters(ExactFields, serializers.Serializer):
    """Reads NO_PARAMETERS: {} (a field, a list or a number is refused)."""


def json_body(request, serializer_class=NoParameters):
    """The request's JSON body read by `serializer_class`, or 400 with every reason. 415
    unless sent as JSON: a form or plain-text POST from another site cannot set that
    content type, so no other site can start work here, even with an empty body."""
    if request.content_type.split(";")[0].strip().lower() != "application/json":
        raise exceptions.UnsupportedMediaType(request.content_type,
                                              detail="send the body as JSON (Content-Type: application/json)")
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data


def started(serializer, what, errors=None):
    """The answers to a request that starts a job: 202 with the new job (or poster), or 200
    with the identical one that was queued or running already (explorer/jobs.py); and the
    request's own error answers."""
    return {202: OpenApiResponse(serializer, description=f"Started: the new {what}; poll its job."),
            200: OpenApiResponse(serializer, description=(
                f"An identical {what} (same kind, collection and parameters) was queued or running already: "
                "that one, and no new job.")), **(errors or {})}


def started_response(serializer, started_object):
    return Response(serializer(started_object).data,
                    status=status.HTTP_200_OK if started_object.reused else status.HTTP_202_ACCEPTED)


def _with_counts(queryset):
    from django.db.models import Count, Sum
    from django.db.models.functions import Coalesce

    return queryset.annotate(source_count=Count("sources"), frame_count=Coalesce(Sum("sources__frame_count"), 0))


class CollectionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Collections, with how many sources and frames each has."""

    serializer_class = CollectionSerializer
    queryset = _with_counts(Collection.objects.all())

    @extend_schema(responses={201: CollectionSerializer, 409: error_response("A collection of that name exists.")})
    def create(self, request):
        """A new, empty collection, sampled with this server's settings."""
        data = json_body(request, CollectionSerializer)
        try:
            with transaction.atomic():
                collection = CollectionSerializer().create(data)
        except IntegrityError:
            raise Conflict(f"a collection named {data['name']!r} already exists") from None
        return Response(CollectionSerializer(self.get_queryset().get(pk=collection.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=IngestRequestSerializer, responses=started(
        JobSerializer, "ingest job",
        {403: error_response("A path outside MEDIA_ROOTS (or none is set): `errors` says which."),
         404: error_response("No such collection, or no such file or folder: `detail` says which.")}))
    @action(detail=True, methods=["post"])
    def ingest(self, request, pk=None):
        """Start ingesting files and folders into this collection; poll the returned job."""
        collection = self.get_object()
        body = json_body(request, IngestRequestSerializer)
        paths = allowed_paths(body["paths"])
        job = start_ingest(collection, paths, embed=body["embed"], roots=settings.MEDIA_ROOTS)
        return started_response(JobSerializer, job)

    @extend_schema(request=NO_PARAMETERS, responses=started(
        JobSerializer, "training job", {409: error_response("The collection has no frames to train on yet.")}))
    @action(detail=True, methods=["post"])
    def train(self, request, pk=None):
        """Refit PCA and retrain the autoencoder on the whole collection, then re-place every frame.
        The current map keeps being served until the new one is ready."""
        collection = self.get_object()
        json_body(request)
        try:
            job = start_training(collection)  # its own transaction, writing first (explorer/jobs.py)
        except NotReady as exc:
            raise Conflict(str(exc)) from None
        return started_response(JobSerializer, job)


@extend_schema_view(list=extend_schema(parameters=[SourceFilter]))
class SourceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SourceSerializer

    def get_queryset(self):
        return listed(self, Source.objects.all(), SourceFilter)


@extend_schema_view(list=extend_schema(parameters=[JobFilter]))
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = JobSerializer

    def get_queryset(self):
        return listed(self, Job.objects.prefetch_related(failed_sources()), JobFilter)

    @extend_schema(request=NO_PARAMETERS, responses={
        200: OpenApiResponse(JobSerializer, description="Cancelled: the job, with status `cancelled`."),
        409: error_response("The job had finished already; nothing was changed.")})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running job. What it has not begun is never run, a running stage
        stops at its next progress report (within seconds), and the map being served stays as
        it is. Files it had not sampled yet stay pending for the next ingest."""
        job = self.get_object()
        json_body(request)
        if not cancel(job):
            job.refresh_from_db()
            raise Conflict(f"job {job.pk} has finished already ({job.status})")
        job.refresh_from_db()
        return Response(JobSerializer(job).data)

