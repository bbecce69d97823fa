"""Ingest: the `scan` stage finds the media under the job's paths and identifies each file by
its content; the `sample` stage samples each file into its frame store, many small files
to a task."""
import logging
import os
from stat import S_ISREG

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from explorer.models import Job, SameContent, Source
from workers import lifecycle
from workers.pieces import FanOut, job_progress
from workers.pipeline.allowed_folders import OutsideAllowedFolders, allowed_real_path
from workers.pipeline.files import NotRegularFile, file_checksum, find_media, media_kind
from workers.pipeline.sampling import MediaError, SamplingParams, sample_source
from workers.stages import Report
from workers.tasks import job_task

log = logging.getLogger(__name__)


def scan(job):
    """Find the media under the job's paths and identify each file by checksum."""
    lifecycle.update(job.pk, progress=0.0, message="looking for media files")
    files, passed_over = find_media(job.params["paths"])
    skipped = [_skip(path, reason, Job.Skip.NOT_MEDIA if not_media else Job.Skip.UNUSABLE)
               for path, reason, not_media in passed_over]
    # A link inside the allowed folders must not lead out of them: such files are never
    # sampled, nor served (explorer/file_views.py checks the same at every request).
    roots, inside = job.allowed_folders, []
    for path in files:
        try:
            allowed_real_path(path, roots, "the folders ingested from")
            inside.append(path)
        except OutsideAllowedFolders as exc:
            skipped.append(_skip(path, exc.reason, Job.Skip.UNUSABLE))
    report = job_progress(job.pk, message="identifying files")
    for number, path in enumerate(inside):
        try:
            source, same_as = _source_for(job.collection, path)
        except NotRegularFile as exc:  # turned into a pipe or a device since it was found
            skipped.append(_skip(path, exc.reason, Job.Skip.UNUSABLE))
        except OSError as exc:
            skipped.append(_skip(path, f"cannot read the file ({exc.strerror})", Job.Skip.UNUSABLE))
        else:
            job.sources.add(source)
            if same_as:
                skipped.append(_skip(path, f"same content as {same_as}", Job.Skip.DUPLICATE))
                SameContent.objects.get_or_create(source=source, path=str(path))  # shown in the duplicates report
        report((number + 1) / len(inside))
    lifecycle.add_skipped(job, skipped)


def _skip(path, reason, kind):
    return {"path": str(path), "reason": reason, "kind": kind}


def _source_for(collection, path):
    """The collection's source for this file, created if its content is new. Returns (source,
    same_as): same_as is the path of another file with this content, whose source it is."""
    stat = path.stat()
    if not S_ISREG(stat.st_mode):
        raise NotRegularFile(path, stat.st_mode)
    known = Source.objects.filter(collection=collection, path=str(path), size=stat.st_size,
                                  mtime=stat.st_mtime).first()
    if known:  # unchanged since it was last seen: no need to read it again
        _retry_if_failed(known)
        return known, ""
    checksum = file_checksum(path)
    source, created = Source.objects.get_or_create(
        collection=collection, checksum=checksum,
        defaults={"path": str(path), "size": stat.st_size, "mtime": stat.st_mtime,
                  "kind": media_kind(path) or Source.Kind.VIDEO},
    )
    if created or source.path == str(path):
        _retry_if_failed(source)
        return source, ""
    if not os.path.exists(source.path) or os.path.samefile(source.path, path):
        # The file moved, or the same file was reached by another path: follow it.
        Source.objects.filter(pk=source.pk).update(path=str(path), mtime=stat.st_mtime)
        return source, ""
    return source, source.path


def _retry_if_failed(source):
    """A file that failed is tried again when it is ingested again: settings (such as
    MAX_IMAGE_PIXELS) or the file may have changed, or the failure may have passed."""
    if source.status == Source.Status.FAILED:
        Source.objects.filter(pk=source.pk, status=Source.Status.FAILED).update(
            status=Source.Status.PENDING, error="", claimed_by="", progress=0.0, attempts=0)


# A message carries files up to SAMPLE_BATCH_BYTES together (a folder of photos goes in
# a few messages, not one per photo); a larger file goes alone.
SAMPLING = FanOut("workers.tasks.sample", Source, Source.objects.all, job_link="jobs", done_label="file(s) sampled",
                  work=F("size"), budget=lambda: settings.SAMPLE_BATCH_BYTES)


@job_task(SAMPLING.task, pieces=SAMPLING)
def sample(self, job_id, source_ids):
    """Sample the message's sources into their frame stores, one after the other."""
    SAMPLING.run(self.request.id, job_id, source_ids, _sample)


def _sample(job_id, source):
    params = SamplingParams(**source.collection.sampling)
    try:
        result = sample_source(source.path, source.frames_dir, params, source.checksum,
                               progress=SAMPLING.progress_writer(job_id, source.pk),
                               max_image_pixels=settings.MAX_IMAGE_PIXELS)
    except MediaError as exc:
        Source.objects.filter(pk=source.pk).update(status=Source.Status.FAILED, error=str(exc),
                                                   progress=1.0, heartbeat=timezone.now())
        log.warning("source %s failed: %s", source.pk, exc)
        return
    Source.objects.filter(pk=source.pk).update(
        status=Source.Status.READY, progress=1.0, error="", warning=result.warning,
        kind=result.kind, duration=result.duration, fps=result.fps, width=result.source_width,
        height=result.source_height, frame_count=result.frames, heartbeat=timezone.now(),
    )


def report(job):
    sources = job.sources.all()
    ready = sources.filter(status=Source.Status.READY).count()
    failed = sources.filter(status=Source.Status.FAILED).count()
    frames = sum(sources.values_list("frame_count", flat=True))
    parts = [f"{ready} file(s) sampled into {frames} frame(s)"]
    if failed:
        parts.append(f"{failed} failed")
    passed_over = [skip for skip in job.skipped if skip.get("kind") != Job.Skip.LEFT_OFF_MAP]
    if passed_over:
        parts.append(f"{len(passed_over)} skipped")
    return Report(tuple(parts), failed=failed, fatal="" if ready else "no file could be sampled")
