"""The durable Job rows that the command line and the pages poll, the pieces of fanned-out
stages, and the workers' heartbeats."""
from django.db import models
from django.utils import timezone

from explorer.models.collection import Collection, Source


class Job(models.Model):
    class Kind(models.TextChoices):
        INGEST = "ingest"  # sample new files, then place them on the map
        TRAIN = "train"  # refit PCA and retrain the autoencoder on the whole collection
        POSTER = "poster"  # render a poster of a region of the map
        CLUSTER = "cluster"  # cluster the map again, or merge or split clusters
        TAG = "tag"  # train a tagger from the labels, then predict every frame
        GIF = "gif"  # an animated GIF of a clip, its colours quantized by k-means
        CUTOUTS = "cutouts"  # frames cut out of their plain backgrounds, for scatter posters
        DUPLICATES = "duplicates"  # find copies and contained clips again (another threshold)

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
    # [stage, when it finished (seconds since the epoch)] for each stage done, in order
    # (workers/lifecycle.py advance): how long each took, however quickly it went by.
    stage_log = models.JSONField(default=list, blank=True)
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
