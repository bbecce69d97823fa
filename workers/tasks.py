"""Celery tasks: the only place where the database and the pipeline meet.

Each task loads its rows by id, marks them running, calls pure pipeline code with
a progress callback, records the outcome, and finishes the job when it was the
last piece. Every task is idempotent, so a redelivered or re-enqueued message is
safe; see workers/recovery.py for how lost messages are found and sent again.
"""
import logging
import os
import time

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from explorer.jobs import SAMPLE_TASK, enqueue
from explorer.models import Job, Source
from workers.celery import app
from workers.pipeline.files import file_checksum, find_media, media_kind
from workers.pipeline.sampling import MediaError, SamplingParams, sample_source

log = logging.getLogger(__name__)

# Only errors that may pass on their own are retried: a locked or restarting
# database. Bad media is not an error of the task; it is recorded on the source.
TRANSIENT = (OperationalError,)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 6}

# Skip reasons that are information, not failure: the job still succeeds.
BENIGN_SKIPS = ("not a video or photo (unknown file extension)", "same content as ")


class Throttle:
    """Calls `write` at most every `interval` seconds (and always for the final 1.0)."""

    def __init__(self, write, interval=0.5):
        self.write, self.interval, self.last = write, interval, 0.0

    def __call__(self, fraction):
        now = time.monotonic()
        if fraction >= 1.0 or now - self.last >= self.interval:
            self.last = now
            self.write(fraction)


class JobTask(app.Task):
    """Records a task's final, unexpected failure on its job, so nothing hangs as `running`."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = args[0]
        reason = f"{type(exc).__name__}: {exc}"
        if self.name == SAMPLE_TASK:
            Source.objects.filter(pk=args[1]).exclude(status__in=Source.TERMINAL).update(
                status=Source.Status.FAILED, error=f"internal error while sampling: {reason}", progress=1.0)
            finish_if_complete(job_id)
        else:
            Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
                status=Job.Status.FAILED, error=f"internal error while scanning: {reason}",
                finished_at=timezone.now(), updated_at=timezone.now())


@app.task(base=JobTask, name="workers.tasks.scan", **RETRY)
def scan(job_id):
    """Find the media under the job's paths, identify each file by checksum, and
    send one sample task per source that still needs sampling."""
    job = Job.objects.select_related("collection").get(pk=job_id)
    if job.finished:
        return
    _update_job(job, status=Job.Status.RUNNING, stage="scan", progress=0.0,
                started_at=job.started_at or timezone.now(), message="looking for media files")
    files, skipped = find_media(job.params["paths"])
    report = Throttle(lambda f: _update_job(job, progress=f, message=f"identifying files ({f:.0%})"))
    for number, path in enumerate(files):
        try:
            source, note = _source_for(job.collection, path)
        except OSError as exc:
            skipped.append((str(path), f"cannot read the file ({exc.strerror})"))
        else:
            job.sources.add(source)
            if note:
                skipped.append((str(path), note))
        report((number + 1) / len(files))

    job.skipped = [{"path": p, "reason": r} for p, r in skipped]
    job.save(update_fields=["skipped", "updated_at"])
    todo = list(job.sources.exclude(status__in=Source.TERMINAL).values_list("pk", flat=True))
    _update_job(job, progress=1.0, message=f"found {len(files)} file(s)")
    _update_job(job, stage="sample", progress=0.0, message=f"sampling {len(todo)} file(s)")
    for source_id in todo:
        enqueue(SAMPLE_TASK, job.pk, source_id)
    finish_if_complete(job.pk)


def _source_for(collection, path):
    """The collection's source for this file, created if its content is new.
    Returns (source, note) where note says why nothing new was made, if so."""
    stat = path.stat()
    known = Source.objects.filter(collection=collection, path=str(path), size=stat.st_size,
                                  mtime=stat.st_mtime).first()
    if known:  # unchanged since it was last seen: no need to read it again
        return known, ""
    checksum = file_checksum(path)
    source, created = Source.objects.get_or_create(
        collection=collection, checksum=checksum,
        defaults={"path": str(path), "size": stat.st_size, "mtime": stat.st_mtime,
                  "kind": media_kind(path) or Source.Kind.VIDEO},
    )
    if created or source.path == str(path):
        return source, ""
    if not os.path.exists(source.path) or os.path.samefile(source.path, path):
        # The file moved, or the same file was reached by another path: follow it.
        Source.objects.filter(pk=source.pk).update(path=str(path), mtime=stat.st_mtime)
        return source, ""
    return source, f"same content as {source.path}"


@app.task(base=JobTask, name="workers.tasks.sample", **RETRY)
def sample(job_id, source_id):
    """Sample one source into its frame store."""
    source = Source.objects.select_related("collection").get(pk=source_id)
    if source.status not in Source.TERMINAL:
        _sample(job_id, source)
    finish_if_complete(job_id)


def _sample(job_id, source):
    Source.objects.filter(pk=source.pk).update(status=Source.Status.RUNNING, heartbeat=timezone.now(),
                                               progress=0.0)

    def write_progress(fraction):
        Source.objects.filter(pk=source.pk).update(progress=fraction, heartbeat=timezone.now())
        _update_job_progress(job_id)

    params = SamplingParams(**source.collection.sampling)
    try:
        result = sample_source(source.path, source.frames_dir, params, source.checksum,
                               progress=Throttle(write_progress),
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


def finish_if_complete(job_id):
    """Close the job when none of its sources is left to sample. Safe to call from
    several workers at once: only one conditional update wins."""
    job = Job.objects.get(pk=job_id)
    if job.finished or job.stage != "sample":
        return
    sources = job.sources.all()
    if sources.exclude(status__in=Source.TERMINAL).exists():
        _update_job_progress(job_id)
        return
    ready = sources.filter(status=Source.Status.READY).count()
    failed = sources.filter(status=Source.Status.FAILED).count()
    problems = [s for s in job.skipped if not s["reason"].startswith(BENIGN_SKIPS)]
    if ready == 0:
        status = Job.Status.FAILED
    elif failed or problems:
        status = Job.Status.PARTIAL
    else:
        status = Job.Status.SUCCEEDED
    frames = sum(sources.values_list("frame_count", flat=True))
    message = f"{ready} file(s) sampled into {frames} frame(s)"
    if failed:
        message += f", {failed} failed"
    if job.skipped:
        message += f", {len(job.skipped)} skipped"
    error = "" if status != Job.Status.FAILED else "no file could be sampled"
    with transaction.atomic():
        Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
            status=status, stage="done", progress=1.0, message=message, error=error,
            finished_at=timezone.now(), updated_at=timezone.now(),
        )


def _update_job(job, **fields):
    for name, value in fields.items():
        setattr(job, name, value)
    fields["updated_at"] = timezone.now()
    Job.objects.filter(pk=job.pk).update(**fields)


def _update_job_progress(job_id):
    rows = list(Job.objects.get(pk=job_id).sources.values_list("progress", "status"))
    if rows:
        done = sum(status in Source.TERMINAL for _, status in rows)
        Job.objects.filter(pk=job_id, stage="sample").update(
            progress=sum(progress for progress, _ in rows) / len(rows),
            message=f"{done} of {len(rows)} file(s) sampled", updated_at=timezone.now())
