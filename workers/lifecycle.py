"""A job's life: which stage comes next, reporting on it, and closing, failing or cancelling
it. Database only (the stages' own code is loaded only where a stage asks for it), so the
web process may cancel a job without loading the pipeline.

A job walks the registry (workers/stages) in order and skips what it does not need: an
ingest that is told not to embed stops after sampling; an ingest into a collection that
already has a trained model places the new frames with it (no training); a train job starts
at features and refits everything.
"""
from django.db.models import Q
from django.utils import timezone

from explorer.models import Collection, Job, Source
from workers import stages


class JobCancelled(Exception):
    """Raised where a cancelled job's work reports progress: the work stops there. Not a
    failure: the task that catches it ends normally."""


def needs(job, stage):
    """Whether `job` has anything to do in `stage` (a registry Stage)."""
    if job.kind not in stage.kinds:
        return False
    if stage.on_map and not (job.params.get("embed", True) and collection_has_frames(job.collection)):
        return False
    return not stage.when or stage.load("when")(job)


def collection_has_frames(collection):
    return collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).exists()


def hold_collection(job):
    """Take the collection's models for this job (the stages that hold them run one job at a
    time per collection). False when another unfinished job holds them."""
    return bool(Collection.objects.filter(pk=job.collection_id).filter(
        Q(embedding_job=None) | Q(embedding_job=job.pk) | Q(embedding_job__status__in=Job.FINISHED)
    ).update(embedding_job=job.pk))


def _release_collection(job_id):
    Collection.objects.filter(embedding_job=job_id).update(embedding_job=None)


def next_stage(job, finished):
    """The name of the stage after `finished` that `job` needs, or DONE."""
    return next((stage.name for stage in stages.after(finished) if needs(job, stage)), stages.DONE)


def advance(job_id, finished_stage):
    """Move the job past `finished_stage`. Returns the new stage's name, or None when
    another worker already moved it (a conditional update: exactly one caller wins)."""
    job = Job.objects.select_related("collection").get(pk=job_id)
    stage = next_stage(job, finished_stage)
    done = stage == stages.DONE
    now = timezone.now()
    moved = Job.objects.filter(pk=job_id, stage=finished_stage).exclude(status__in=Job.FINISHED).update(
        stage=stage, progress=0.0, message="" if done else "waiting for a worker",
        claimed_by="", updated_at=now, stage_log=[*job.stage_log, [finished_stage, now.timestamp()]])
    if not moved:
        return None
    if done:
        close(job_id)
    return stage


def close(job_id):
    """Finish the job with a status and a one-line summary of what came out of it: each
    stage it needed says its part (the registry's `report`)."""
    job = Job.objects.select_related("collection").get(pk=job_id)
    reports = [stage.load("report")(job) for stage in stages.STAGES if stage.report and needs(job, stage)]
    parts = [part for report in reports for part in report.parts]
    problems = [skip for skip in job.skipped if skip.get("kind") not in Job.BENIGN_SKIPS]
    fatal = next((report.fatal for report in reports if report.fatal), "")
    if fatal:
        status = Job.Status.FAILED
    elif problems or any(report.failed for report in reports):
        status = Job.Status.PARTIAL
    else:
        status = Job.Status.SUCCEEDED
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=status, stage=stages.DONE, progress=1.0, message=", ".join(parts), error=fatal,
        finished_at=timezone.now(), updated_at=timezone.now())
    _release_collection(job_id)


def fail(job_id, error):
    """End the job as failed, where it stands. Its message says where, not the last progress
    it reported (a failed job never reads "2 of 2 chunks done")."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=Job.Status.FAILED, error=error, message=f"failed during {job.stage}", claimed_by="",
        finished_at=timezone.now(), updated_at=timezone.now())
    _release_collection(job_id)


def cancel(job_id):
    """Cancel an unfinished job; False when it had finished already. What it has not begun
    is never run (a piece is claimed only for an open job), a running stage stops at its
    next progress report (update raises JobCancelled), and the collection's models are free
    for the next job. The map being served stays as it is: a stage publishes a new map only
    as its last step, and no cancelled stage gets there."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return False
    now = timezone.now()
    cancelled = Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=Job.Status.CANCELLED, message=f"cancelled during {job.stage}", claimed_by="", finished_at=now,
        updated_at=now)
    if cancelled:
        _release_collection(job_id)
    return bool(cancelled)


def is_open(job_id):
    return Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).exists()


def update(job_id, **fields):
    """Report on an unfinished job (a finished job's row stays as it ended); raises
    JobCancelled when it was cancelled, so the work reporting stops."""
    if not Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(updated_at=timezone.now(),
                                                                                  **fields):
        if Job.objects.filter(pk=job_id, status=Job.Status.CANCELLED).exists():
            raise JobCancelled(job_id)


def add_skipped(job, entries):
    """Add {"path", "reason", "kind"} entries to the job's skipped list, each once."""
    known = {(skip["path"], skip["reason"]) for skip in job.skipped}
    job.skipped = job.skipped + [entry for entry in entries if (entry["path"], entry["reason"]) not in known]
    Job.objects.filter(pk=job.pk).update(skipped=job.skipped)
