"""POST /api/collections/{id}/predict/: the collection's tagger applied to a photo or a video
sent with the request, or to a frame the collection has; with the collection's most similar
frames and their places on the map.

An upload is sampled as an ingest would sample it (workers/pipeline/sampling.py
sample_upload) inside a temporary folder deleted when the request ends: nothing of it is
kept. Its crops go to the predict worker (workers/predictor.py), the one process that keeps
Xception loaded; the head and the neighbour search run here, in NumPy and faiss.
"""
import functools
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from explorer.api import refuse_oversized
from explorer.api_errors import error_response
from explorer.api_params import INT64_MAX, ExactFields, StrictFloatField, StrictIntegerField
from explorer.cluster_api import collection_or_404
from explorer.map_api import FrameSchema, frame_json, source_info
from explorer.prediction_api import ScoreSchema, require_predictions
from explorer.predictions import collection_precision, head_of, label_ids, label_scores
from explorer.served_maps import snapshot
from workers.pipeline.arrays import read_manifest
from workers.pipeline.features import CROP
from workers.predictor import PredictorUnavailable, describe

NEAREST = 5


class Unavailable(exceptions.APIException):
    status_code = 503
    default_detail = "the predict worker is not available"


TOP_HELP = "How many labels to answer, most probable first (default 3)."


class PredictUpload(ExactFields, serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True,
                                 help_text="A photo or a video. Of a video, a frame a second of its first "
                                           "PREDICT_MAX_VIDEO_SECONDS is tagged.")
    top = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=3, help_text=TOP_HELP)


class PredictFrame(ExactFields, serializers.Serializer):
    source = StrictIntegerField(min_value=1, max_value=INT64_MAX, help_text="A source of the collection...")
    timestamp = StrictFloatField(min_value=0, max_value=1e9,
                                 help_text="...and a time in it, in seconds (its nearest sampled frame).")
    top = StrictIntegerField(required=False, min_value=1, max_value=1000, default=3, help_text=TOP_HELP)


class NearestSchema(serializers.Serializer):
    frame = FrameSchema()
    distance = serializers.FloatField(help_text="Squared distance in the 256-d PCA space; smaller is closer.")


PREDICTION = inline_serializer("Prediction", {
    "data": ScoreSchema(many=True, help_text="The most probable labels (of a video: its mean over its seconds)."),
    "kind": serializers.ChoiceField(choices=["photo", "video", "frame"]),
    "seconds": inline_serializer("SecondPrediction", {
        "time": serializers.FloatField(), "data": ScoreSchema(many=True)}, many=True,
        help_text="Of a video: the labels of each second."),
    "nearest": NearestSchema(many=True, help_text="The collection's most similar frames, with their places on "
                                                  "the map (empty while the map is being remade)."),
    "tagger": inline_serializer("TaggerVersion", {"id": serializers.IntegerField(),
                                                  "version": serializers.IntegerField()}),
})


@extend_schema(request={"multipart/form-data": PredictUpload, "application/json": PredictFrame},
               responses={200: PREDICTION, 400: error_response(
                   "Not an image or video, empty, too big, over the pixel limit, or no tagger yet."),
                   404: OpenApiResponse(description="Unknown collection, or a source or frame it does not have."),
                   409: error_response("The tagger's predictions for the current map are being made."),
                   503: error_response("The predict worker is not running.")})
@api_view(["POST"])
@parser_classes([MultiPartParser, JSONParser])
def predict(request, pk):
    """The tagger's labels for a photo or video, or for a frame of the collection, with the
    collection's most similar frames. Viewers may ask: it changes nothing."""
    collection = collection_or_404(pk)
    refuse_oversized(request, settings.PREDICT_MAX_UPLOAD_MB, "PREDICT_MAX_UPLOAD_MB")
    frame = request.content_type.split(";")[0].strip().lower() == "application/json"
    body = (PredictFrame if frame else PredictUpload)(data=request.data)
    body.is_valid(raise_exception=True)
    query = body.validated_data
    tagger = collection.tagger
    if tagger is None:
        raise exceptions.ValidationError({"detail": f"collection {collection.name!r} has no tagger yet: label frames "
                                                    "of at least two kinds and train one (its page, or "
                                                    "`manage.py tag`)"})
    answer = _predict_frame(collection, tagger, query) if frame else \
        _predict_upload(collection, tagger, query["file"], query["top"])
    answer["tagger"] = {"id": tagger.pk, "version": tagger.version}
    return Response(answer)


def _predict_frame(collection, tagger, query):
    current = snapshot(collection)
    path = current.path(query["source"]) if current is not None else None
    if path is None:
        raise exceptions.NotFound(f"source {query['source']} is not on the collection's map")
    row = int(path["rows"][np.argmin(np.abs(path["times"] - query["timestamp"]))])
    _, _, probabilities = require_predictions(collection)
    distances, rows = current.neighbours.search(current.vectors[row], NEAREST + 1)
    keep = rows[0] != row
    return {"data": label_scores(tagger, probabilities[row], query["top"]), "kind": "frame", "seconds": [],
            "nearest": _nearest(current, distances[0][keep][:NEAREST], rows[0][keep][:NEAREST])}


def _predict_upload(collection, tagger, upload, top):
    from workers.pipeline.images import left_and_right_squares
    from workers.pipeline.sampling import MediaError, SamplingParams, sample_upload

    name = Path(upload.name or "upload").name
    limit = settings.PREDICT_MAX_UPLOAD_MB
    if upload.size == 0:
        raise exceptions.ValidationError({"detail": f"{name}: empty file (0 bytes)"})
    if upload.size > limit * 1024 * 1024:
        raise exceptions.ValidationError({"detail": f"{name}: {upload.size / 2**20:.1f} MB is over the limit of "
                                                    f"{limit} MB (PREDICT_MAX_UPLOAD_MB)"})
    params = SamplingParams(**collection.sampling) if collection.sampling else SamplingParams()
    with tempfile.TemporaryDirectory(prefix="explorer-predict-") as work:
        path = Path(work) / ("upload" + _safe_suffix(name))
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        try:
            kind, frames, times = sample_upload(path, Path(work) / "frames", params, settings.MAX_IMAGE_PIXELS,
                                                settings.PREDICT_MAX_VIDEO_SECONDS)
        except MediaError as error:
            raise exceptions.ValidationError({"detail": str(error).replace(str(path), name)}) from None
    crops = np.stack([crop for frame in frames for crop in left_and_right_squares(frame, CROP)])
    try:
        described = describe(crops, collection_precision(collection), settings.PREDICT_ADDRESS, settings.SECRET_KEY,
                             timeout=settings.PREDICT_TIMEOUT)
    except PredictorUnavailable as error:
        raise Unavailable(str(error)) from None
    features = described.reshape(len(frames), -1)  # a frame's left square's 2048 values, then its right's
    probabilities = head_of(tagger).probabilities(features)
    answer = {"data": label_scores(tagger, probabilities.mean(axis=0), top), "kind": kind, "seconds": [],
              "nearest": _nearest_to(collection, features.mean(axis=0, keepdims=True))}
    if kind == "video":
        ids = label_ids(tagger)
        answer["seconds"] = [{"time": round(float(t), 3), "data": label_scores(tagger, p, top, ids)}
                             for t, p in zip(times, probabilities)]
    return answer


def _safe_suffix(name):
    """The upload's extension, if it is a plain one (it tells a photo from a video)."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix[1:].isalnum() and len(suffix) <= 6 else ""


def _nearest_to(collection, features):
    """The collection's frames nearest to `features` in the map's PCA space; none while the
    collection's PCA is newer than its map (a retraining is placing the frames again)."""
    current = snapshot(collection)
    state = read_manifest(collection.models_dir, "pca")
    made_with = (read_manifest(current.directory, "pca") or {}).get("produced_by", {}) if current else {}
    if current is None or state is None or made_with.get("pca") != state["version"]:
        return []
    vectors = _pca(str(collection.models_dir / "pca.npz"), state["version"]).transform(features)
    distances, rows = current.neighbours.search(vectors, NEAREST)
    return _nearest(current, distances[0], rows[0])


@functools.lru_cache(maxsize=4)
def _pca(path, version):
    from workers.pipeline.reduce import StreamingPCA

    return StreamingPCA.load(path)


def _nearest(current, distances, rows):
    found = [(float(d), int(r)) for d, r in zip(distances, rows) if r >= 0]
    info = source_info([int(current.index["source"][r]) for _, r in found])
    return [{"frame": frame_json(current, row, info), "distance": round(distance, 4)} for distance, row in found]
