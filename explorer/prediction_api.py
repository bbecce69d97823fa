"""JSON API of the tagger's predictions on the current map (explorer/predictions.py reads
them): every frame with its predicted label and probabilities, filtered to a label, or the
frames that need a person's review, least confident first; and per video, the mean over its
frames. The map draws the same predictions as a coloured overlay (file_views.tag_tile)."""
import functools

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from explorer import labels as labelling
from explorer.api_errors import Conflict, error_response
from explorer.api_params import QueryBooleanField, QuerySerializer, validated_query
from explorer.cluster_api import collection_or_404
from explorer.label_api import LABEL_NAME
from explorer.map_api import FrameSchema, frame_json, source_info
from explorer.models import Job, Label
from explorer.predictions import (
    FramePredictions, current_predictions, label_ids, label_scores, predicted_labels, source_means,
)
from explorer.served_maps import require_snapshot
from workers.pipeline.tiles import tag_colour

NOT_FOUND = OpenApiResponse(description="Unknown collection, a label the tagger does not have, or a page past the "
                                        "last.")
NO_PREDICTIONS = error_response("No map yet, no tagger yet, or the tagger's predictions for the current map are still "
                                "being made: `detail` says which.")


class LabelChoiceField(serializers.CharField):
    """A label's name, as the tagger knows it (a 404 names the ones it has)."""

    def __init__(self, **kwargs):
        super().__init__(required=False, max_length=100, trim_whitespace=False, validators=[LABEL_NAME], **kwargs)


class PageFields(QuerySerializer):
    page = serializers.IntegerField(required=False, min_value=1, max_value=10**9, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=60)


class PredictionsQuery(PageFields):
    label = LabelChoiceField(help_text="Only the frames predicted as this label, most probable first (with review: "
                                       "those predicted as it or labelled as it).")
    review = QueryBooleanField(required=False, default=False,
                               help_text="true: the frames that need a look, least confident first: those whose "
                                         "prediction disagrees with their label, and the unlabelled ones whose top "
                                         "probability is below `below`.")
    below = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                   help_text="With review: the probability under which an unlabelled frame needs a "
                                             "look (default: the TAGGER_REVIEW_BELOW setting, 0.6).")


class VideosQuery(PageFields):
    label = LabelChoiceField(help_text="Only the videos whose mean is highest for this label, most probable first.")


class ScoreSchema(serializers.Serializer):
    id = serializers.CharField(allow_null=True, help_text="The label's id; null when the label was deleted since "
                                                         "the tagger was trained.")
    name = serializers.CharField()
    probability = serializers.FloatField()


class TaggerLabelSchema(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    colour = serializers.CharField(help_text="Its colour on the map (#rrggbb).")
    predicted = serializers.IntegerField(help_text="Frames of the map predicted as it.")


class PredictingTaggerSchema(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    classes = serializers.ListField(child=serializers.CharField(), help_text="Its labels, in the order of its "
                                                                             "outputs.")
    labels = TaggerLabelSchema(many=True, help_text="Its labels, in the same order, with colour and frames.")
    tile_url = serializers.CharField(help_text="The map's overlay of predicted labels: a PNG per tile, "
                                               "{z}/{x}/{y}{r}, {r} empty or @2x (twice the pixels); "
                                               "`?only=N` dims every label but the Nth.")


class PredictionSchema(serializers.Serializer):
    frame = FrameSchema()
    predicted = serializers.CharField(help_text="The most probable label.")
    probability = serializers.FloatField(help_text="Its probability.")
    confidence = serializers.FloatField(help_text="The probability of the label people gave, for a labelled frame "
                                                  "(0 for a label the tagger does not know); of the predicted one "
                                                  "otherwise. Review lists least confident first.")
    top = ScoreSchema(many=True, help_text="The three most probable labels.")
    label = serializers.CharField(allow_null=True, help_text="The label people gave it, or null.")
    disagrees = serializers.BooleanField(help_text="Labelled, and predicted as another label.")


class VideoPredictionSchema(serializers.Serializer):
    source = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    frames = serializers.IntegerField(help_text="Its frames on the map.")
    predicted = serializers.CharField(help_text="The label of highest mean probability over its frames.")
    probability = serializers.FloatField(help_text="That mean.")
    top = ScoreSchema(many=True, help_text="The three labels of highest mean probability.")


def _paged(common):
    return {"tagger": PredictingTaggerSchema(), "map_version": serializers.CharField(),
            "count": serializers.IntegerField(), "page": serializers.IntegerField(),
            "pages": serializers.IntegerField(), **common}


def require_predictions(collection):
    """(map, tagger, probabilities), or 409 saying what is missing."""
    current = require_snapshot(collection)
    tagger, probabilities = current_predictions(collection, current.version)
    if tagger is None:
        raise Conflict(f"collection {collection.pk} has no tagger yet: label frames of at least two kinds, then "
                       "train one (the collection's page, or POST /api/collections/ID/tagger/)")
    if probabilities is None or len(probabilities) != len(current):
        job = collection.jobs.exclude(status__in=Job.FINISHED).first()
        doing = f": job {job.pk} is at stage {job.stage}" if job else ": train the tagger again"
        raise Conflict(f"tagger {tagger.version} has not tagged the frames of the current map yet{doing}")
    return current, tagger, probabilities


def _class_index(tagger, name):
    if name is None:
        return None
    if name not in tagger.classes:
        raise exceptions.NotFound(f"tagger {tagger.version} has no label {name!r}: its labels are "
                                  f"{', '.join(repr(c) for c in tagger.classes)}")
    return tagger.classes.index(name)


def _page(rows, query, what):
    size = query["page_size"]
    pages = max(1, -(-len(rows) // size))
    if query["page"] > pages:
        raise exceptions.NotFound(f"there are {pages} page(s) of {size} {what}")
    return rows[(query["page"] - 1) * size:query["page"] * size], pages


def _tagger_json(collection, tagger, current, ids, counts):
    tile_url = reverse("tag-tile", args=[collection.pk, current.version, tagger.pk, 0, 0, 0])
    return {"id": tagger.pk, "version": tagger.version, "classes": tagger.classes,
            "labels": [{"id": ids[name], "name": name, "colour": tag_colour(index), "predicted": count}
                       for index, (name, count) in enumerate(zip(tagger.classes, counts))],
            "tile_url": tile_url.replace("/0/0/0.png", "/{z}/{x}/{y}{r}.png")}


@extend_schema(parameters=[PredictionsQuery], responses={200: inline_serializer("Predictions", _paged({
    "below": serializers.FloatField(allow_null=True, help_text="The review's threshold; null unless review."),
    "predictions": PredictionSchema(many=True)})), 404: NOT_FOUND, 409: NO_PREDICTIONS},
    operation_id="predictions_list")
@api_view(["GET"])
def predictions(request, pk):
    """The frames of the current map with the tagger's predictions, a page at a time: every
    frame in map order, the frames predicted as a label, or those that need review."""
    collection = collection_or_404(pk)
    query = validated_query(request, PredictionsQuery)
    current, tagger, probabilities = require_predictions(collection)
    label = _class_index(tagger, query.get("label"))
    predicted, best = predicted_labels(tagger, current.version)
    names = dict(Label.objects.filter(collection=collection).values_list("pk", "name"))
    frames = FramePredictions(tagger, probabilities, predicted, best, labelling.row_labels(collection, current), names)
    below = query.get("below", settings.TAGGER_REVIEW_BELOW) if query["review"] else None
    rows = frames.rows(label, query["review"], below)
    page_rows, pages = _page(rows, query, "frames")
    info = source_info([int(current.index["source"][row]) for row in page_rows])
    ids = label_ids(tagger)
    return Response({"tagger": _tagger_json(collection, tagger, current, ids, frames.counts()),
                     "map_version": current.version, "count": len(rows), "page": query["page"], "pages": pages,
                     "below": below, "predictions": [{"frame": frame_json(current, int(row), info),
                                                      **frames.item(row, ids)} for row in page_rows]})


@functools.lru_cache(maxsize=8)
def _video_means(directory, written, version, spans):
    """Keyed by the map's version and its spans, not its snapshot: a cached snapshot would keep
    an evicted map's memmaps and faiss index alive."""
    from workers.pipeline.arrays import open_array

    return source_means(open_array(directory, "probabilities"), spans)


@extend_schema(parameters=[VideosQuery], responses={200: inline_serializer("VideoPredictions", _paged({
    "videos": VideoPredictionSchema(many=True)})), 404: NOT_FOUND, 409: NO_PREDICTIONS},
    operation_id="predictions_videos")
@api_view(["GET"])
def video_predictions(request, pk):
    """Per video of the current map, the mean of its frames' probabilities, a page at a time:
    by source id, or with `label` the videos it tops, most probable first."""
    import numpy as np

    collection = collection_or_404(pk)
    query = validated_query(request, VideosQuery)
    current, tagger, _ = require_predictions(collection)
    label = _class_index(tagger, query.get("label"))
    directory = tagger.predictions_dir(current.version)
    means = _video_means(str(directory), (directory / "probabilities.json").stat().st_mtime_ns, current.version,
                         current.spans)
    tops = means.argmax(axis=1) if len(means) else np.zeros(0, np.int64)
    positions = np.arange(len(means))
    if label is not None:
        positions = positions[tops == label]
        positions = positions[np.argsort(-means[positions, label], kind="stable")]
    page_positions, pages = _page(positions, query, "videos")
    spans = current.spans
    info = source_info([int(spans.sources[p]) for p in page_positions])
    ids = label_ids(tagger)
    predicted, _ = predicted_labels(tagger, current.version)
    counts = np.bincount(predicted, minlength=len(tagger.classes)).tolist()
    videos = []
    for position in page_positions:
        source = int(spans.sources[position])
        described = info.get(source, {"name": "(removed)", "kind": ""})
        videos.append({"source": source, "name": described["name"], "kind": described["kind"],
                       "frames": int(spans.counts[position]), "predicted": tagger.classes[int(tops[position])],
                       "probability": round(float(means[position, tops[position]]), 4),
                       "top": label_scores(tagger, means[position], 3, ids)})
    return Response({"tagger": _tagger_json(collection, tagger, current, ids, counts),
                     "map_version": current.version, "count": len(positions), "page": query["page"],
                     "pages": pages, "videos": videos})
