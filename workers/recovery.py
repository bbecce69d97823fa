"""Finding work whose message was lost, and sending it again.

Acks-late with reject-on-worker-lost already redelivers a task whose pool process
died. Two cases remain, and a timer in every worker covers them:

* The broker lost its queue: a Redis that keeps nothing on disk was restarted.
  A marker key is set in Redis; when it is missing, Redis has lost its data, and
  the one worker that sets it again re-enqueues every pending piece of every job.
* A whole worker died (or its machine): its pieces stay `running` with a
  heartbeat that stops, or its job stops reporting; after STALE_AFTER seconds they
  are sent again (a job by resuming its current stage). A job whose next stage
  could not be sent (the broker was away at the hand-off: explorer.jobs.send) is
  silent the same way, and resumed at the stage its row records.

Tasks are idempotent, so a piece sent twice costs time, never correctness.
"""
import logging
import socket
import uuid
from contextlib import contextmanager

from celery import bootsteps
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

log = logging.getLogger(__name__)

EPOCH_KEY = "explorer:broker-epoch"


def requeue_all_unfinished(send):
    """After the broker lost its queue: send again every pending piece of every job in a
    fanned-out stage. A job whose single-task stage message was lost stops reporting and
    is resumed by requeue_stale; a stage that is running goes on undisturbed."""
    from explorer.jobs import FEATURES_TASK, SAMPLE_TASK
    from explorer.models import Job, Source, WorkItem

    count = 0
    for job in Job.objects.exclude(status__in=Job.FINISHED).filter(stage__in=("sample", "features")):
        if job.stage == "sample":
            pending = job.sources.filter(status=Source.Status.PENDING).values_list("pk", flat=True)
            task = SAMPLE_TASK
        else:
            pending = job.items.filter(status=WorkItem.Status.PENDING).values_list("pk", flat=True)
            task = FEATURES_TASK
        for piece_id in pending:
            send(task, job.pk, piece_id)
            count += 1
    return count


def requeue_stale(send, stale_after):
    """Send again the pieces whose worker stopped beating, and jobs that went silent."""
    from explorer.jobs import FEATURES_TASK, RUN_STAGE_TASK, SAMPLE_TASK
    from explorer.models import Job, Source, WorkItem

    cutoff = timezone.now() - timezone.timedelta(seconds=stale_after)
    count = 0
    # Conditional updates throughout: of several workers noticing at once, one re-sends.
    for source in Source.objects.filter(status=Source.Status.RUNNING, heartbeat__lt=cutoff):
        if Source.objects.filter(pk=source.pk, status=Source.Status.RUNNING,
                                 heartbeat=source.heartbeat).update(status=Source.Status.PENDING, claimed_by=""):
            with _as_it_was_unless_sent(Source, source, "status", "claimed_by"):
                for job_id in source.jobs.exclude(status__in=Job.FINISHED).values_list("pk", flat=True):
                    send(SAMPLE_TASK, job_id, source.pk)
                    count += 1
    stale_items = WorkItem.objects.filter(status=WorkItem.Status.RUNNING, heartbeat__lt=cutoff)
    for item in stale_items.exclude(job__status__in=Job.FINISHED):
        if WorkItem.objects.filter(pk=item.pk, status=WorkItem.Status.RUNNING,
                                   heartbeat=item.heartbeat).update(status=WorkItem.Status.PENDING, claimed_by=""):
            with _as_it_was_unless_sent(WorkItem, item, "status", "claimed_by"):
                send(FEATURES_TASK, item.job_id, item.pk)
                count += 1
    # A job that reported nothing for that long lost its stage's message (or its worker):
    # resume the stage. A stage that is alive heartbeats (tasks.heartbeat), so it is left alone.
    for job in Job.objects.exclude(status__in=Job.FINISHED).filter(updated_at__lt=cutoff):
        # Its claim goes with it: whoever held the stage is presumed gone.
        if Job.objects.filter(pk=job.pk, updated_at=job.updated_at).update(updated_at=timezone.now(),
                                                                           claimed_by=""):
            with _as_it_was_unless_sent(Job, job, "updated_at", "claimed_by"):
                send(RUN_STAGE_TASK, job.pk, job.stage)
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


class RecoveryStep(bootsteps.StartStopStep):
    """A timer in the worker's main process: heartbeat, then look for lost work."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        self.tref = None
        self.state = {}
        self.hostname = getattr(worker, "hostname", None) or socket.gethostname()

    def start(self, worker):
        self.tref = worker.timer.call_repeatedly(settings.RECOVERY_INTERVAL, self.tick, (worker,), priority=10)
        self.tick(worker)

    def stop(self, worker):
        if self.tref:
            self.tref.cancel()
            self.tref = None
        from django.db import connections

        from explorer.models import WorkerHeartbeat

        WorkerHeartbeat.objects.filter(hostname=self.hostname).delete()
        connections.close_all()

    def tick(self, worker):
        # Imported here: this module is loaded with the Celery app, before Django is set up.
        from django.db import close_old_connections, connections

        from explorer.models import WorkerHeartbeat

        def send(name, *args):
            worker.app.send_task(name, args=list(args))

        try:
            close_old_connections()
            WorkerHeartbeat.objects.update_or_create(hostname=self.hostname,
                                                     defaults={"seen_at": timezone.now()})
            if broker_lost_its_queue(self.state):
                count = requeue_all_unfinished(send)
                log.warning("the broker lost its queue; re-enqueued %d pending piece(s)", count)
            count = requeue_stale(send, settings.STALE_AFTER)
            if count:
                log.warning("re-enqueued %d piece(s) of work whose worker stopped", count)
        except BrokerUnreachable as exc:  # what was lost stays lost until the next look
            log.warning("the broker is unreachable (%s); looking for lost work again in %s s",
                        exc, settings.RECOVERY_INTERVAL)
        except Exception:  # the timer must survive a database or broker hiccup
            log.exception("recovery check failed; trying again in %s s", settings.RECOVERY_INTERVAL)
        finally:
            # Pool processes are forked from this process: never let them inherit a connection.
            connections.close_all()
