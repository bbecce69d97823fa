"""Collections and their sources.

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
    # The copies shown on the map and in the duplicates report (the latest detection).
    duplicates = models.ForeignKey("Duplicates", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
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

    @property
    def known_duration(self):
        """Seconds of video there are to show: its duration as decoding found it, or where that
        was unknown (a stream without one), the time of its last sampled frame; 0 for a photo."""
        if self.duration is not None or self.kind == self.Kind.PHOTO:
            return self.duration or 0.0
        from workers.pipeline.arrays import open_array

        try:
            times = open_array(self.frames_dir, "index")["time"]
        except FileNotFoundError:
            return 0.0
        return float(times[-1]) if len(times) else 0.0
