"""The Celery application. Configuration comes from Django settings (CELERY_*)."""
import os

from celery import Celery
from celery.worker.consumer import Consumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")

app = Celery("explorer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


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


app.conf.worker_consumer = f"{__name__}:ReconnectingConsumer"


def _install_steps():
    from workers.recovery import RecoveryStep

    app.steps["worker"].add(RecoveryStep)


_install_steps()
