"""JSON API of the tagger: the collection's tagger with its validation, training a new one
(a job: workers/stages/tagging.py), and the tagger's predictions for the frames of the map."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from explorer.api import JobSerializer, json_body, started, started_response
from explorer.api_errors import Conflict, error_response
from explorer.api_params import ExactFields
from explorer.cluster_api import collection_or_404
from explorer.jobs import NotReady, start_tagging
from explorer.models import FrameLabel, Tagger
from workers.pipeline.tagger import HEADS, TaggerError, check_labels

NOT_FOUND = OpenApiResponse(description="Unknown collection.")


class PerLabelSchema(serializers.Serializer):
    label = serializers.CharField()
    precision = serializers.FloatField(help_text="Of the held-out frames it predicted this label for, the share "
                                                 "that have it.")
    recall = serializers.FloatField(help_text="Of the held-out frames with this label, the share it found.")
    frames = serializers.IntegerField(help_text="Held-out frames with this label.")


class ValidationSchema(serializers.Serializer):
    frames = serializers.IntegerField()
    videos = serializers.IntegerField(help_text="Held-out videos: their frames were left out of the training.")
    accuracy = serializers.FloatField()
    per_label = PerLabelSchema(many=True)
    confusion = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()),
                                      help_text="Rows: the label given; columns: the label predicted; both in "
                                                "the order of `classes`.")


class TaggerSchema(serializers.ModelSerializer):
    validation = serializers.SerializerMethodField()
    in_use = serializers.SerializerMethodField(help_text="The collection's tagger: its predictions are shown.")

    class Meta:
        model = Tagger
        fields = ["id", "version", "head", "classes", "created_at", "job", "validation", "in_use"]

    @extend_schema_field(ValidationSchema(allow_null=True, help_text="Of a tagger trained without the held-out "
                                                                     "videos; null when none could be held out."))
    def get_validation(self, tagger):
        return tagger.report.get("validation")

    def get_in_use(self, tagger) -> bool:
        return tagger.collection.tagger_id == tagger.pk


class TaggerRequest(ExactFields, serializers.Serializer):
    head = serializers.ChoiceField(choices=HEADS, default="softmax",
                                   help_text="softmax: a regularized logistic regression; dense: one hidden layer.")


def readiness(collection):
    """Labelled frames per label, and what is missing to train (empty when nothing is)."""
    from django.db.models import Count

    counts = dict(FrameLabel.objects.filter(collection=collection).values_list("label__name").annotate(
        n=Count("pk")).order_by("label__name"))
    try:
        check_labels(counts)
        needed = ""
    except TaggerError as error:
        needed = str(error)
    return counts, needed


@extend_schema(responses={200: inline_serializer("TaggerState", {
    "tagger": TaggerSchema(allow_null=True, help_text="The tagger in use, or null."),
    "taggers": TaggerSchema(many=True, help_text="Every version, newest first."),
    "labelled": serializers.DictField(child=serializers.IntegerField(), help_text="Labelled frames per label."),
    "needed": serializers.CharField(help_text="What is missing to train one (empty when it can be trained)."),
}), 404: NOT_FOUND}, methods=["GET"], operation_id="tagger_state")
@extend_schema(request=TaggerRequest, responses=started(JobSerializer, "tagger training", {
    404: NOT_FOUND, 409: error_response("No map yet, or too few labels: `detail` says how many more.")}),
    methods=["POST"], operation_id="tagger_train")
@api_view(["GET", "POST"])
def tagger(request, pk):
    """GET: the collection's tagger, its validation on held-out videos, and its earlier
    versions. POST (editors): train a new tagger on the labels; it then tags every frame."""
    collection = collection_or_404(pk)
    if request.method == "POST":
        body = json_body(request, TaggerRequest)
        try:
            return started_response(JobSerializer, start_tagging(collection, body["head"]))
        except NotReady as error:
            raise Conflict(str(error)) from None
    versions = list(collection.taggers.select_related("collection", "job"))
    counts, needed = readiness(collection)
    in_use = next((t for t in versions if t.pk == collection.tagger_id), None)
    return Response({"tagger": TaggerSchema(in_use).data if in_use else None,
                     "taggers": TaggerSchema(versions, many=True).data, "labelled": counts, "needed": needed})
