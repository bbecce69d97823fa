"""The Celery application, and sending a task message. Configuration comes from Django
settings (CELERY_*).

Both sides import this module, and the web process only sends messages by task name: what
only a worker needs is named here by strings that only a worker resolves (the modules that
declare the tasks, from the stage registry; the consumer and the recovery timer, in
workers/worker_side.py).
"""
import logging
import os
import time

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnreachable

from workers import stages

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")

log = logging.getLogger(__name__)

app = Celery("explorer", include=stages.task_modules())
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.worker_consumer = "workers.worker_side:ReconnectingConsumer"
app.steps["worker"].add("workers.worker_side:RecoveryStep")
app.steps["worker"].add("workers.worker_side:LimitThreads")


def send(task_name, *args, countdown=None, patience=0.0):
    """Send a task message; returns whether it went. The Job rows are the truth and a message
    only wakes a worker, so a broker that cannot be reached fails nothing: the send is tried
    again with backoff for up to `patience` seconds, then given up with a warning. The job,
    whose row still says what comes next, stops reporting, and the recovery in every worker
    (workers/recovery.py) resumes it once the broker is back."""
    deadline, pause = time.monotonic() + patience, 0.5
    while True:
        try:
            app.send_task(task_name, args=list(args), countdown=countdown)
            return True
        except BrokerUnreachable as exc:
            if time.monotonic() + pause > deadline:
                log.warning("%s%s not sent, the broker is unreachable (%s): recovery resends it once it is back",
                            task_name, tuple(args), exc)
                return False
            time.sleep(pause)
            pause = min(2 * pause, 10.0)
