"""JSON API of the colour tools: clip GIFs (a job each: workers/stages/colour.py; the file at
/gifs/ID/file) and cutting every frame out of its background (a job) for scatter posters.
The hover previews are files (explorer/file_views.py preview)."""
from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import api_view
from rest_framework.parsers import JSONParser, MultiPartParser

from explorer.api import JobSerializer, json_body, listed, refuse_oversized, started, started_response
from explorer.api_errors import Conflict, error_response
from explorer.api_params import (
    INT64_MAX, CollectionFilter, ExactFields, StrictBooleanField, StrictFloatField, StrictIntegerField,
)
from explorer.cluster_api import collection_or_404
from explorer.jobs import GIF_DEFAULTS, GifError, NotReady, start_cutouts, start_gif
from explorer.models import Collection, Gif
from workers.pipeline.cutouts import BACKGROUNDS, CLUSTER_RANGE
from workers.pipeline.cutouts import DEFAULTS as CUTOUT_SETTINGS
from workers.pipeline.palette import DISTANCES, MAX_COLOURS, MIN_COLOURS, SEEDINGS

PALETTE_IMAGE_MAX_MB = 20


class GifSerializer(serializers.ModelSerializer):
    job = JobSerializer(read_only=True)
    download = serializers.SerializerMethodField(help_text="The GIF, once made (?inline=1 shows it in place).")

    class Meta:
        model = Gif
        fields = ["id", "collection", "source", "start", "stop", "params", "frames", "width", "height", "file_size",
                  "flicker", "source_flicker", "created_at", "job", "download"]
        read_only_fields = fields
        extra_kwargs = {
            "flicker": {"help_text": "Mean colour change (CIELAB ΔE) between consecutive frames where the source "
                                     "itself stays still: lower is steadier."},
            "source_flicker": {"help_text": "The same measure of the source's own frames."}}

    def get_download(self, gif) -> str | None:
        from django.urls import reverse

        return reverse("gif-file", args=[gif.pk]) if gif.file_size else None


class PaletteFrom(ExactFields, serializers.Serializer):
    source = StrictIntegerField(min_value=1, max_value=INT64_MAX, help_text="A source of the collection...")
    time = StrictFloatField(min_value=0, max_value=1e9, help_text="...and the second of it whose colours to take.")


def _gif_request(name, integer, number, extra):
    """The body of a GIF request: as JSON (strict types) or as a form with a picture."""
    fields = {
        "collection": integer(min_value=1, max_value=INT64_MAX),
        "source": integer(min_value=1, max_value=INT64_MAX, help_text="The video (or photo) of the clip."),
        "start": number(min_value=0, max_value=1e9, default=0.0, help_text="Seconds from the video's start."),
        "stop": number(min_value=0, max_value=1e9, default=0.0, help_text=(
            f"Seconds; at most GIF_MAX_SECONDS ({settings.GIF_MAX_SECONDS:g}) after start.")),
        "colours": integer(min_value=MIN_COLOURS, max_value=MAX_COLOURS, default=GIF_DEFAULTS["colours"],
                           help_text="Palette size K: the colours of each frame are clustered into K."),
        "distance": serializers.ChoiceField(DISTANCES, default=GIF_DEFAULTS["distance"],
                                            help_text="euclidean: k-means; manhattan: k-medians."),
        "seeding": serializers.ChoiceField(SEEDINGS, default=GIF_DEFAULTS["seeding"], help_text=(
            "sequential: each frame's clustering starts from the previous frame's colours (no flicker); "
            "independent: each frame starts afresh; global: one palette for the clip.")),
        "fps": number(min_value=0.1, max_value=settings.GIF_MAX_FPS, default=GIF_DEFAULTS["fps"]),
        "width": integer(min_value=16, max_value=settings.GIF_MAX_WIDTH, default=GIF_DEFAULTS["width"],
                         help_text="Pixels; the height follows the video's shape."),
        **extra}
    return type(name, (ExactFields, serializers.Serializer), {"__doc__": "A GIF of a clip.", **fields})


GifRequest = _gif_request("GifRequest", StrictIntegerField, StrictFloatField, {
    "palette_from": PaletteFrom(required=False, allow_null=True, default=None,
                                help_text="Take the colours of this frame (palette transfer).")})
GifUpload = _gif_request("GifUpload", serializers.IntegerField, serializers.FloatField, {
    "palette_image": serializers.FileField(help_text=(
        f"A picture whose colours the GIF takes (palette transfer); at most {PALETTE_IMAGE_MAX_MB} MB."))})


@extend_schema_view(list=extend_schema(parameters=[CollectionFilter]))
class GifViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = GifSerializer
    parser_classes = [JSONParser, MultiPartParser]

    def get_queryset(self):
        return listed(self, Gif.objects.select_related("job"), CollectionFilter)

    @extend_schema(request={"application/json": GifRequest, "multipart/form-data": GifUpload},
                   responses=started(GifSerializer, "GIF", {
                       400: error_response("Parameters or a clip that cannot make a GIF: `detail` says why.")}))
    def create(self, request):
        """Make an animated GIF of a clip, its colours quantized by k-means; poll its job,
        then download it. Impossible parameters get 400 with every reason."""
        refuse_oversized(request, PALETTE_IMAGE_MAX_MB, "a GIF's palette picture")
        multipart = request.content_type.split(";")[0].strip().lower() == "multipart/form-data"
        body = (GifUpload if multipart else GifRequest)(data=request.data)
        body.is_valid(raise_exception=True)
        params = dict(body.validated_data)
        collection = get_object_or_404(Collection, pk=params.pop("collection"))
        source_id = params.pop("source")
        source = collection.sources.filter(pk=source_id).first()
        if source is None:
            raise exceptions.ValidationError(f"collection {collection.name!r} has no source {source_id}")
        start, stop = params.pop("start"), params.pop("stop")
        picture = _palette_picture(params.pop("palette_image")) if multipart else None
        try:
            gif = start_gif(collection, source, start, stop, params, palette_image=picture)
        except GifError as exc:
            raise exceptions.ValidationError(str(exc)) from None  # the fields together: no one field
        return started_response(GifSerializer, gif)


def _palette_picture(upload):
    """The uploaded picture as RGB pixels, no larger than a palette needs (fit_reference)."""
    import tempfile

    import numpy as np

    from workers.pipeline.palette import fit_reference
    from workers.pipeline.sampling import MediaError, read_photo

    if upload.size > PALETTE_IMAGE_MAX_MB * 2**20:
        raise exceptions.ValidationError({"palette_image": [f"{upload.size / 2**20:.1f} MB is over the limit of "
                                                            f"{PALETTE_IMAGE_MAX_MB} MB"]})
    with tempfile.NamedTemporaryFile(prefix="explorer-palette-") as saved:
        for chunk in upload.chunks():
            saved.write(chunk)
        saved.flush()
        try:
            return fit_reference(np.asarray(read_photo(saved.name, settings.MAX_IMAGE_PIXELS)))
        except MediaError as exc:
            message = str(exc).replace(saved.name, upload.name or "the picture")
            raise exceptions.ValidationError({"palette_image": [message]}) from None


class CutoutRequest(ExactFields, serializers.Serializer):
    clusters = StrictIntegerField(min_value=CLUSTER_RANGE[0], max_value=CLUSTER_RANGE[1],
                                  default=CUTOUT_SETTINGS["clusters"],
                                  help_text="Colour clusters per frame (k-means).")
    background = serializers.ChoiceField(BACKGROUNDS, default=CUTOUT_SETTINGS["background"], help_text=(
        "corners: every cluster that holds a real share of the frame's border is background; first-pixel: the "
        "cluster of the top-left pixel."))
    position = StrictBooleanField(default=False, help_text=(
        "Cluster each pixel by where it is as well as by its colour: a background of the subject's colours, "
        "away from it, comes apart from it."))


@extend_schema(request=CutoutRequest, responses=started(JobSerializer, "job", {
    404: OpenApiResponse(description="Unknown collection."),
    409: error_response("The collection has no sampled frames yet.")}))
@api_view(["POST"])
def cutouts(request, pk):
    """Cut every sampled frame of the collection out of its plain background: RGBA PNGs kept
    beside the frames, which scatter posters (mode=scatter) draw at the frames' places."""
    collection = collection_or_404(pk)
    query = json_body(request, CutoutRequest)
    try:
        job = start_cutouts(collection, query["clusters"], query["background"], query["position"])
    except NotReady as exc:
        raise Conflict(str(exc)) from None
    return started_response(JobSerializer, job)
