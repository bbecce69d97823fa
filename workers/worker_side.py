"""What only a worker process loads: Celery's consumer, made to survive a Redis restart, and
the recovery timer. workers/celery.py names both by strings, so the web process, which
imports the Celery app to send messages, never loads them."""
import logging
import os
import socket

from celery import bootsteps
from celery.worker.consumer import Consumer
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

log = logging.getLogger(__name__)


class ReconnectingConsumer(Consumer):
    """Celery's consumer, made to survive the loss of its Redis connection while a task runs.

    On a lost connection, celery 5.7.0 (the latest release; 5.6 did not) collect()s the
    connection and then close()s it again. collect() detaches the transport (its `client`
    becomes None) but keeps the connection's default channel, and when that channel's first
    close stopped early (it re-raises the error of the BRPOP it was waiting on: a pool process
    was free), the second close finishes it and restores the unacknowledged messages through
    a new Redis pool made from the detached transport: AttributeError "'NoneType' object has
    no attribute 'hostname'", which no handler expects, and the worker process exits.
    Forgetting the default channel once collect() has run leaves the second close nothing to
    do, as in 5.6: the running tasks acknowledge their messages through the channel's own
    pool when they end. Harmless once celery fixes it; tests/test_faults.py restarts Redis
    twice under a working worker."""

    def on_connection_error_after_connected(self, exc):
        connection = self.connection
        if connection is not None:
            collect = connection.collect

            def collect_and_forget_the_channel(*args, **kwargs):
                try:
                    return collect(*args, **kwargs)
                finally:
                    connection._default_channel = None

            connection.collect = collect_and_forget_the_channel
        super().on_connection_error_after_connected(exc)


class LimitThreads(bootsteps.Step):
    """FEATURE_THREADS, when set, caps the threads of each pool process's networks: set as
    the environment the pool processes inherit, before any of them loads TensorFlow (which
    reads it once) or OpenVINO (workers/pipeline/xception_openvino.py). Unset, each pool
    process's runtime uses every core: measured on 2 cores with two pool processes, a thread
    each made the features stage half as fast (300 photos: 20-24 s against 10-11 s), as
    neither process keeps its core busy while it crops frames and writes its results."""

    def __init__(self, worker, **kwargs):
        if settings.FEATURE_THREADS:
            os.environ["FEATURE_THREADS"] = str(settings.FEATURE_THREADS)
            os.environ["TF_NUM_INTRAOP_THREADS"] = str(settings.FEATURE_THREADS)
            log.info("each pool process runs its networks on %d thread(s)", settings.FEATURE_THREADS)


class RecoveryStep(bootsteps.StartStopStep):
    """A timer in the worker's main process: heartbeat, then look for lost work."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        self.tref = None
        self.state = {}
        self.hostname = getattr(worker, "hostname", None) or socket.gethostname()

    def start(self, worker):
        # A worker started by hand on a fresh data folder sets up its SQLite database like
        # the commands do, or stops with what to run (another database).
        from explorer.database import prepare_database

        prepare_database(lambda text: log.warning("%s", text.strip()))
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
        # Imported here: the worker loads its steps before Django is set up.
        from django.db import close_old_connections, connections

        from explorer.models import WorkerHeartbeat
        from workers.recovery import broker_lost_its_queue, requeue_all_unfinished, requeue_stale

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
