"""What people and the tagger say about frames: clusterings, labels, their history, taggers."""
from django.conf import settings
from django.db import models
from django.utils import timezone

from explorer.models.collection import Collection, Source
from explorer.models.job import Job


class Clustering(models.Model):
    """One grouping of a map's frames into clusters (workers/stages/clusters.py). Which
    cluster each frame is in lives in files (`directory`), one row per frame of the map
    version it was made from; this row says how it was made, by whom and from what."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="clusterings")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="clusterings")
    map_version = models.CharField(max_length=32)
    # {"method": "auto"|"kmeans"|"affinity", "over": "frames"|"clips", "k", "preference", "damping"}
    params = models.JSONField(default=dict)
    # A merge or a split is made from another clustering: undoing it goes back there.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    edit = models.JSONField(default=dict, blank=True)  # {"merge": [a, b]} or {"split": c, "k": k}
    clusters = models.IntegerField(default=0)
    outliers = models.IntegerField(default=0)  # frames flagged as far-off members
    details = models.JSONField(default=dict, blank=True)  # how the method chose (see Clusters.details)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"clustering {self.pk} of {self.collection}"

    @property
    def directory(self):
        return self.collection.data_dir / "clusters" / str(self.pk)


class Label(models.Model):
    """A name people give to frames ("basketball", "sponsor board")."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["collection", "name"], name="one_label_per_name")]

    def __str__(self):
        return self.name


class LabelAction(models.Model):
    """One thing a person did to the labels or the clusters: who, when, what. The frames it
    changed and what they were before are its LabelChange rows, so it can be undone."""

    class Kind(models.TextChoices):
        NAME_CLUSTER = "name_cluster"  # every member of a cluster takes the label
        LABEL_FRAMES = "label_frames"  # chosen frames take the label (or lose theirs)
        LABEL_VIDEO = "label_video"  # every frame of a source
        IMPORT = "import"  # rows of a CSV or JSON file
        MERGE = "merge"  # two clusters made one (a new clustering)
        SPLIT = "split"  # a cluster split by k-means inside it (a new clustering)

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="label_actions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    who = models.CharField(max_length=150)  # the user's name when it was done (the user may go)
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    description = models.TextField()  # one line: what was done, for the history
    frames = models.IntegerField(default=0)  # frames whose label changed
    clustering_before = models.ForeignKey(Clustering, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+")
    clustering_after = models.ForeignKey(Clustering, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]


class FrameLabel(models.Model):
    """The label a frame has now. A frame is (source, frame number): labels belong to frames,
    not to clusters, so they outlive any re-clustering."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="frame_labels")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="frame_labels")
    frame = models.IntegerField()
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="frames")
    action = models.ForeignKey(LabelAction, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "frame"], name="one_label_per_frame")]
        indexes = [models.Index(fields=["collection", "label"])]


class LabelChange(models.Model):
    """A frame an action changed, with its label before (None: it had none)."""

    action = models.ForeignKey(LabelAction, on_delete=models.CASCADE, related_name="changes")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    frame = models.IntegerField()
    before = models.ForeignKey(Label, null=True, on_delete=models.SET_NULL, related_name="+")


class Tagger(models.Model):
    """A classifier head trained from the collection's labels (workers/stages/tagging.py).
    Its weights and its predictions for each map version live in `directory`; this row
    says what it learned from and how well it did on the videos held out."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="taggers")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="taggers")
    version = models.IntegerField()  # 1, 2, ... within the collection
    head = models.CharField(max_length=16)  # "softmax" or "dense" (workers/pipeline/tagger.py)
    classes = models.JSONField(default=list)  # label names, in the order of the head's outputs
    # Features it learned from: {"weights": ..., "precision": ...}; frames it predicts must match.
    features = models.JSONField(default=dict)
    # workers/pipeline/tagger.py train(): labels and their frames, the validation by video.
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["collection", "version"], name="one_tagger_per_version")]

    def __str__(self):
        return f"tagger {self.version} of {self.collection}"

    @property
    def directory(self):
        return self.collection.data_dir / "taggers" / str(self.pk)

    @property
    def head_path(self):
        """The trained head's weights (workers/pipeline/tagger.py Head)."""
        return self.directory / "head.npz"

    def predictions_dir(self, map_version):
        return self.directory / "predictions" / map_version
