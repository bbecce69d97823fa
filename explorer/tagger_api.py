"""JSON API of the tagger: the collection's tagger with its validation and its earlier
versions, and training a new one (a job: workers/stages/tagging.py). Its predictions are
explorer/prediction_api.py; tagging a file, explorer/predict_api.py."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from explorer.api import JobSerializer, json_body, started, started_response
from explorer.api_errors import Conflict, error_response
from explorer.api_params import ExactFields
from explorer.cluster_api import collection_or_404
from explorer.jobs import NotReady, start_tagging
from explorer.labels import tagger_readiness
from explorer.models import Tagger
from workers.pipeline.tagger import HEADS

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


class FineTunedSchema(ValidationSchema):
    frames = serializers.IntegerField(required=False)
    videos = serializers.IntegerField(required=False)
    accuracy = serializers.FloatField(required=False)
    per_label = PerLabelSchema(many=True, required=False)
    confusion = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()), required=False)
    epochs = serializers.IntegerField(required=False)
    trained_frames = serializers.IntegerField(required=False, help_text="Labelled frames the top blocks learned from.")
    note = serializers.CharField(required=False, help_text="Why it was not fine-tuned.")


class TaggerSchema(serializers.ModelSerializer):
    validation = serializers.SerializerMethodField()
    fine_tuned = serializers.SerializerMethodField()
    unvalidated = serializers.SerializerMethodField(help_text="Labels not validated: all their frames are of one "
                                                              "video, which stays in the training.")
    in_use = serializers.SerializerMethodField(help_text="The collection's tagger: its predictions are shown.")

    class Meta:
        model = Tagger
        fields = ["id", "version", "head", "classes", "created_at", "job", "validation", "fine_tuned", "unvalidated",
                  "in_use"]

    @extend_schema_field(ValidationSchema(allow_null=True, help_text="Of a tagger trained without the held-out "
                                                                     "videos; null when none could be held out."))
    def get_validation(self, tagger):
        return tagger.report.get("validation")

    @extend_schema_field(FineTunedSchema(allow_null=True, help_text=(
        "With fine_tune: the top blocks of Xception fine-tuned on the same frames, scored on the same held-out "
        "videos as `validation`; null when it was not asked.")))
    def get_fine_tuned(self, tagger):
        return tagger.report.get("fine_tuned")

    def get_unvalidated(self, tagger) -> list[str]:
        return tagger.report.get("unvalidated", [])

    def get_in_use(self, tagger) -> bool:
        return tagger.collection.tagger_id == tagger.pk


class TaggerRequest(ExactFields, serializers.Serializer):
    head = serializers.ChoiceField(choices=HEADS, default="softmax",
                                   help_text="softmax: a regularized logistic regression; dense: one hidden layer.")
    fine_tune = serializers.BooleanField(default=False, help_text=(
        "Also fine-tune the top blocks of Xception on the labelled frames and report them beside the frozen head "
        "(minutes on a CPU; the frozen head still tags the collection)."))


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
            return started_response(JobSerializer, start_tagging(collection, body["head"], body["fine_tune"]))
        except NotReady as error:
            raise Conflict(str(error)) from None
    versions = list(collection.taggers.select_related("collection", "job"))
    counts, needed = tagger_readiness(collection)
    in_use = next((t for t in versions if t.pk == collection.tagger_id), None)
    return Response({"tagger": TaggerSchema(in_use).data if in_use else None,
                     "taggers": TaggerSchema(versions, many=True).data, "labelled": counts, "needed": needed})
