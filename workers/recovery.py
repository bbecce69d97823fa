"""Finding work whose message was lost, and sending it again.

Acks-late with reject-on-worker-lost already redelivers a task whose pool process
died. Two cases remain, and a timer in every worker covers them:

* The broker lost its queue: a Redis that keeps nothing on disk was restarted.
  A marker key is set in Redis; when it is missing, Redis has lost its data, and
  the one worker that sets it again re-enqueues every pending piece of every job.
* A whole worker died (or its machine): its pieces stay `running` with a
  heartbeat that stops, or its job stops reporting; after STALE_AFTER seconds they
  are sent again (a job by resuming its current stage). A job whose next stage
  could not be sent (the broker was away at the hand-off: workers.celery.send) is
  silent the same way, and resumed at the stage its row records.

The timer itself is workers/worker_side.py's RecoveryStep; what it looks for is here, read
off the stage registry: a fanned-out stage's pieces, and any job's current stage.

Tasks are idempotent, so a piece sent twice costs time, never correctness.
"""
import uuid
from contextlib import contextmanager

from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from explorer.models import Job
from workers import stages

EPOCH_KEY = "explorer:broker-epoch"


def requeue_all_unfinished(send):
    """After the broker lost its queue: send again every pending piece of every job in a
    fanned-out stage. A job whose single-task stage message was lost stops reporting and
    is resumed by requeue_stale; a stage that is running goes on undisturbed."""
    count = 0
    for stage in stages.FANNED_OUT:
        pieces = stage.load("pieces")
        for job in Job.objects.exclude(status__in=Job.FINISHED).filter(stage=stage.name):
            for message in pieces.messages(pieces.of_job(job).filter(status="pending")):
                send(pieces.task, job.pk, message)
                count += len(message)
    return count


def requeue_stale(send, stale_after):
    """Send again the pieces whose worker stopped beating, and jobs that went silent."""
    cutoff = timezone.now() - timezone.timedelta(seconds=stale_after)
    count = 0
    # Conditional updates throughout: of several workers noticing at once, one re-sends.
    for stage in stages.FANNED_OUT:
        pieces = stage.load("pieces")
        for piece in pieces.all_pieces().filter(status="running", heartbeat__lt=cutoff):
            jobs = pieces.open_jobs_of(piece.pk).filter(stage=stage.name).values_list("pk", flat=True)
            # Pending again even when no job waits for it now: a later job may claim it.
            if pieces.model.objects.filter(pk=piece.pk, status="running", heartbeat=piece.heartbeat).update(
                    status="pending", claimed_by=""):
                with _as_it_was_unless_sent(pieces.model, piece, "status", "claimed_by"):
                    for job_id in jobs:
                        send(pieces.task, job_id, [piece.pk])
                        count += 1
    # A job that reported nothing for that long lost its stage's message (or its worker):
    # resume the stage. A stage that is alive heartbeats (workers.pieces.heartbeat), so it is left alone.
    for job in Job.objects.exclude(status__in=Job.FINISHED).filter(updated_at__lt=cutoff):
        # Its claim goes with it: whoever held the stage is presumed gone.
        if Job.objects.filter(pk=job.pk, updated_at=job.updated_at).update(updated_at=timezone.now(),
                                                                           claimed_by=""):
            with _as_it_was_unless_sent(Job, job, "updated_at", "claimed_by"):
                send(stages.RUN_STAGE_TASK, job.pk, job.stage)
                count += 1
    return count


@contextmanager
def _as_it_was_unless_sent(model, row, *fields):
    """Put the row's `fields` back when the message could not be sent (the broker is away),
    so that the next look finds it still lost and tries again."""
    try:
        yield
    except BrokerUnreachable:
        model.objects.filter(pk=row.pk).update(**{field: getattr(row, field) for field in fields})
        raise


def broker_lost_its_queue(epoch_holder):
    """True once after a Redis broker has lost its data (restarted without persistence)."""
    if not settings.REDIS_URL:
        return False  # the embedded filesystem broker keeps its queue on disk
    import redis

    client = epoch_holder.setdefault("client", redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5))
    first_look = "epoch" not in epoch_holder
    epoch_holder["epoch"] = epoch_holder.get("epoch") or uuid.uuid4().hex
    try:
        created = client.set(EPOCH_KEY, epoch_holder["epoch"], nx=True)
    except redis.RedisError:
        return False  # unreachable right now: look again on the next tick
    # On our very first look the key may be missing simply because no worker ever ran.
    return bool(created) and not first_look
