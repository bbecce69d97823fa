"""Starting jobs. Tasks are sent by name after the transaction commits, so a worker
never looks for a row that is not there yet, and the web process never imports
the pipeline."""
from django.db import transaction

from explorer.models import Job
from workers.celery import app as celery_app

SCAN_TASK = "workers.tasks.scan"
SAMPLE_TASK = "workers.tasks.sample"


def start_ingest(collection, paths):
    job = Job.objects.create(
        collection=collection, kind=Job.Kind.INGEST, params={"paths": [str(p) for p in paths]},
        message="waiting for a worker",
    )
    enqueue(SCAN_TASK, job.pk)
    return job


def enqueue(task_name, *args):
    transaction.on_commit(lambda: celery_app.send_task(task_name, args=list(args)))
