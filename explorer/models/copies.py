"""Copies among a collection's files: detections of near-duplicates and contained clips, and
files skipped at scan as exact copies of a source."""
from django.db import models
from django.utils import timezone

from explorer.models.collection import Collection, Source
from explorer.models.job import Job


class Duplicates(models.Model):
    """One detection of copies over the frames of a map version (workers/stages/duplicates.py).
    Its groups, relations and which frame copies which live in files (`directory`,
    workers/pipeline/copy_groups.py); this row says how it was made and what it found."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="duplicate_detections")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    map_version = models.CharField(max_length=32)
    threshold = models.FloatField()  # the least score called a copy
    groups = models.IntegerField(default=0)
    relations = models.IntegerField(default=0)
    copied_frames = models.IntegerField(default=0)  # frames that copy a frame of a more original file
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"duplicates {self.pk} of {self.collection}"

    @property
    def directory(self):
        return self.collection.data_dir / "duplicates" / str(self.pk)


class SameContent(models.Model):
    """A file passed over at scan because its bytes are a source's: an exact copy of it."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="exact_copies")
    path = models.TextField()
    found_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["source", "path"], name="one_row_per_exact_copy")]
