"""Collections, their sources, and the durable Job rows that the CLI and UI poll.

Frames are not rows: a million frames would be a million rows written and read for
nothing. Each source's frames and their index (frame number, timestamp) live in
its folder under DATA_DIR (see workers/pipeline/sampling.py); the database keeps
one row per source with its frame count.
"""
from pathlib import Path

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

# A collection's name shows on pages, in file names and headers: 1 to 200 characters, no
# control characters, no space at either end. The API (and its schema) and the CLI check it.
COLLECTION_NAME = RegexValidator(r"\A[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,198}[^\x00-\x20\x7f])?\Z",
                                 "a collection name is 1 to 200 characters, with no control characters "
                                 "and no space at either end")


class Collection(models.Model):
    name = models.CharField(max_length=200, unique=True)
    # Sampling parameters shared by every source of the collection (SamplingParams).
    sampling = models.JSONField(default=dict)
    # The trained embedding, once there is one: model version, weights, PCA variance,
    # frame count of the layout... (see workers/stages/embed.py).
    embedding = models.JSONField(default=dict, blank=True)
    # The job that holds the collection's models while it refits or places frames (pca,
    # train, layout): one at a time, so two jobs never interleave their models.
    embedding_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    # The clusters shown on the map and in the galleries (a re-clustering, a merge or a
    # split makes a new one; undoing a merge or a split goes back to the one before).
    clustering = models.ForeignKey("Clustering", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # The tagger whose predictions the map, the galleries and the predict API use.
    tagger = models.ForeignKey("Tagger", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def data_dir(self):
        return Path(settings.DATA_DIR) / "collections" / str(self.pk)

    @property
    def embedding_dir(self):
        """Collection-wide arrays, one row per frame: index, pca, codes, layout."""
        return self.data_dir / "embedding"

    @property
    def maps_dir(self):
        """Published maps, one immutable folder per version, with their tile caches."""
        return self.data_dir / "maps"

    @property
    def sources_dir(self):
        return self.data_dir / "sources"

    @property
    def models_dir(self):
        """Fitted PCA, trained autoencoder and layout stretch."""
        return self.data_dir / "models"


class Source(models.Model):
    class Kind(models.TextChoices):
        VIDEO = "video"
        PHOTO = "photo"

    class Status(models.TextChoices):
        PENDING = "pending"  # found, waiting for a worker
        RUNNING = "running"  # a worker is sampling it
        READY = "ready"  # sampled (perhaps only in part: see `warning`)
        FAILED = "failed"  # nothing usable; `error` says why

    TERMINAL = (Status.READY, Status.FAILED)

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="sources")
    path = models.TextField()
    checksum = models.CharField(max_length=64)  # SHA-256 of the content: one source per content
    size = models.BigIntegerField()
    mtime = models.FloatField()  # with path and size, lets an unchanged file skip re-hashing
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    warning = models.TextField(blank=True)
    duration = models.FloatField(null=True, blank=True)
    fps = models.FloatField(null=True, blank=True)
    width = models.IntegerField(null=True, blank=True)  # as displayed
    height = models.IntegerField(null=True, blank=True)
    frame_count = models.IntegerField(default=0)
    heartbeat = models.DateTimeField(null=True, blank=True)  # last sign of life of its worker
    claimed_by = models.CharField(max_length=64, blank=True)  # the task (message) sampling it
    attempts = models.IntegerField(default=0)  # claims so far: bounded (MAX_ATTEMPTS)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["collection", "checksum"], name="one_source_per_content"),
        ]
        indexes = [models.Index(fields=["collection", "status"])]

    def __str__(self):
        return self.path

    @property
    def frames_dir(self):
        return self.collection.sources_dir / str(self.pk)


class Job(models.Model):
    class Kind(models.TextChoices):
        INGEST = "ingest"  # sample new files, then place them on the map
        TRAIN = "train"  # refit PCA and retrain the autoencoder on the whole collection
        POSTER = "poster"  # render a poster of a region of the map
        CLUSTER = "cluster"  # cluster the map again, or merge or split clusters
        TAG = "tag"  # train a tagger from the labels, then predict every frame

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # everything asked for was done
        PARTIAL = "partial"  # finished, but some files failed or were skipped
        FAILED = "failed"  # nothing usable came out, or the job itself broke
        CANCELLED = "cancelled"  # stopped on request (workers/lifecycle.py cancel)

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED, Status.CANCELLED)

    class Skip(models.TextChoices):
        """Why a file was passed over: the `kind` of each entry of `skipped`."""
        NOT_MEDIA = "not_media"  # inside a folder, without a video or photo extension
        DUPLICATE = "duplicate"  # the same content as a file the collection has
        UNUSABLE = "unusable"  # missing, unreadable, not a regular file, an empty folder, outside the roots
        LEFT_OFF_MAP = "left_off_map"  # sampled, but its features are incomplete
        WARNING = "warning"  # used in part: a poster's cells left blank, or made from a newer map

    # Skips that are information, not failure: a job with only these still succeeds.
    BENIGN_SKIPS = (Skip.NOT_MEDIA, Skip.DUPLICATE)

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.INGEST)
    params = models.JSONField(default=dict)  # e.g. {"paths": [...]}
    stage = models.CharField(max_length=32)  # a stage of the registry (workers/stages), or "done"
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)  # of the current stage, 0-1
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # Files passed over and why: [{"path": ..., "reason": ..., "kind": a Skip}].
    skipped = models.JSONField(default=list)
    sources = models.ManyToManyField(Source, related_name="jobs", blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)  # the task running its current stage
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self):
        return f"{self.kind} job {self.pk} ({self.status})"

    @property
    def finished(self):
        return self.status in self.FINISHED

    @property
    def allowed_folders(self):
        """The folders an ingest job may take files from, and its files may be served from:
        the server's MEDIA_ROOTS for a job started from the web, the folders named on the
        command line for one started there."""
        from workers.pipeline.allowed_folders import folders_of

        return self.params.get("roots") or folders_of(self.params.get("paths", []))


class WorkerHeartbeat(models.Model):
    """Workers say they are alive here, whatever the broker: `ingest` uses it to decide
    whether to start local workers, and the UI to show how many are online."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()

    @classmethod
    def alive(cls, within_seconds=15):
        since = timezone.now() - timezone.timedelta(seconds=within_seconds)
        return cls.objects.filter(seen_at__gte=since)


class WorkItem(models.Model):
    """One piece of a fanned-out stage: a chunk of a source's frames to describe.
    Several workers share a stage by taking its items; the job moves on when the
    last item is done. Durable, so lost messages can be found and sent again."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    TERMINAL = (Status.DONE, Status.FAILED)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    stage = models.CharField(max_length=32)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="items")
    start = models.IntegerField()  # frames [start, stop) of the source
    stop = models.IntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)  # the task (message) working on it
    attempts = models.IntegerField(default=0)  # claims so far: bounded (MAX_ATTEMPTS)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "stage", "source", "start"], name="one_item_per_chunk")]
        indexes = [models.Index(fields=["job", "stage", "status"])]


class Poster(models.Model):
    """A printable mosaic of a region of the map (workers/pipeline/posters.py). Its
    parameters are kept, with the map version it was made from, so it can be made again."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="posters")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="posters")
    params = models.JSONField()  # PosterSpec.as_dict()
    map_version = models.CharField(max_length=32)
    width = models.IntegerField(default=0)  # pixels, once rendered
    height = models.IntegerField(default=0)
    file_size = models.BigIntegerField(default=0)
    cells = models.IntegerField(default=0)  # cells holding a frame
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"poster {self.pk} of {self.collection}"

    @property
    def file_path(self):
        return self.collection.data_dir / "posters" / f"poster-{self.pk}.{self.params['format']}"

    @property
    def ready(self):
        return self.file_size > 0 and self.file_path.exists()


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
