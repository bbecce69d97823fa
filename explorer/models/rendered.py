"""What jobs render for people to take away: posters and clip GIFs."""
from django.db import models
from django.utils import timezone

from explorer.models.collection import Collection, Source
from explorer.models.job import Job


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


class Gif(models.Model):
    """An animated GIF of a clip, its colours quantized by k-means (workers/pipeline/palette.py),
    with how much it flickers next to how much the source itself changes where it is still."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="gifs")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="gifs")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="gifs")
    start = models.FloatField()  # seconds from the source's start
    stop = models.FloatField()
    # colours, distance, seeding, fps, width, and palette_from ({"source", "time"} or
    # {"image": true}: an uploaded picture kept at `palette_image_path`)
    params = models.JSONField(default=dict)
    frames = models.IntegerField(default=0)
    width = models.IntegerField(default=0)
    height = models.IntegerField(default=0)
    file_size = models.BigIntegerField(default=0)
    flicker = models.FloatField(null=True, blank=True)  # palette.flicker of the GIF's frames
    source_flicker = models.FloatField(null=True, blank=True)  # the same measure of the source's frames
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"GIF {self.pk} of {self.collection}"

    @property
    def file_path(self):
        return self.collection.data_dir / "gifs" / f"gif-{self.pk}.gif"

    @property
    def palette_image_path(self):
        """An uploaded picture whose colours the GIF takes (palette transfer)."""
        return self.collection.data_dir / "gifs" / f"gif-{self.pk}.palette.png"

    @property
    def ready(self):
        return self.file_size > 0 and self.file_path.exists()
