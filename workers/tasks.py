"""Celery wiring: the task class every job task shares, and `run_stage`, the one task that
begins or resumes any stage. The stages' own code is in workers/stages/, found through the
registry; a fanned-out stage declares its piece task there with `job_task`.

Every task is idempotent, so a redelivered or re-enqueued message is safe; see
workers/recovery.py for how lost messages are found and sent again.
"""
import logging

from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from explorer.models import Collection, Job
from workers import lifecycle, stages
from workers.celery import app, send
from workers.pieces import begin_next, claim_stage, heartbeat

log = logging.getLogger(__name__)

# Only errors that may pass on their own are retried: a locked or restarting
# database. Bad media is not an error of the task; it is recorded on the source.
RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 6}


class JobTask(app.Task):
    """Records a task's final, unexpected failure where it belongs, so nothing hangs as
    `running`: on the piece of a fanned-out stage (the job goes on without it), or else on
    the job."""

    pieces = None  # the FanOut whose pieces the task does, if it does pieces

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = args[0]
        reason = f"{type(exc).__name__}: {exc}"
        if self.pieces is not None:
            self.pieces.fail(job_id, args[1], f"internal error: {reason}", task_id)
        else:
            lifecycle.fail(job_id, f"stage {args[1]} failed: {reason}")


def job_task(name, pieces=None):
    """The decorator of a job's task: (job id, ...) arguments, retries on a busy database;
    `pieces` is the FanOut of a piece task."""
    return app.task(base=JobTask, bind=True, name=name, pieces=pieces, **RETRY)


@job_task(stages.RUN_STAGE_TASK)
def run_stage(self, job_id, stage_name):
    """Begin or resume a stage of the job; a no-op when the job is elsewhere already or a
    live task runs this stage. A cancelled job's stage stops at its next progress report."""
    if not claim_stage(job_id, stage_name, self.request.id):
        return
    try:
        _run_stage(job_id, stages.get(stage_name))
    except lifecycle.JobCancelled:
        log.info("stage %s stopped: job %s was cancelled", stage_name, job_id)


def _run_stage(job_id, stage):
    job = Job.objects.select_related("collection").get(pk=job_id)
    if job.status == Job.Status.QUEUED:
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, started_at=timezone.now())
    if stage.holds_models and not lifecycle.hold_collection(job):
        holder = Collection.objects.get(pk=job.collection_id).embedding_job_id
        lifecycle.update(job_id, claimed_by="", message=f"waiting for job {holder} to finish this collection's map")
        send(stages.RUN_STAGE_TASK, job_id, stage.name, countdown=5, patience=settings.STALE_AFTER)
        return
    with heartbeat(Job, job_id, "updated_at"):
        if stage.run:
            stage.load("run")(job)
        if stage.pieces:
            stage.load("pieces").enqueue_unfinished(job)  # the last piece to finish moves the job on
        else:
            begin_next(job_id, stage.name)
