"""Starting jobs. Tasks are sent by name after the transaction commits, so a worker
never looks for a row that is not there yet, and the web process never imports
the pipeline."""
import logging
import time

from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnreachable

from explorer.models import Job
from workers.celery import app as celery_app

log = logging.getLogger(__name__)

RUN_STAGE_TASK = "workers.tasks.run_stage"  # (job id, stage): begins or resumes a stage
SAMPLE_TASK = "workers.tasks.sample"  # (job id, source id)
FEATURES_TASK = "workers.tasks.features"  # (job id, work item id)


def start_ingest(collection, paths, embed=True, roots=None):
    """Sample the files under `paths`; with `embed`, go on to place them on the map.
    With `roots` (a job started from the web), every file found must resolve inside them."""
    params = {"paths": [str(p) for p in paths], "embed": embed}
    if roots is not None:
        params["roots"] = [str(r) for r in roots]
    job = Job.objects.create(collection=collection, kind=Job.Kind.INGEST, stage="scan", params=params,
                             message="waiting for a worker")
    enqueue(RUN_STAGE_TASK, job.pk, job.stage)
    return job


def start_training(collection):
    """Refit PCA and retrain the autoencoder on every frame of the collection."""
    from explorer.models import Source

    if not collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).exists():
        raise ValueError(f"collection {collection.name!r} has no sampled frames to train on: ingest media first")
    job = Job.objects.create(collection=collection, kind=Job.Kind.TRAIN, stage="features",
                             params={"embed": True}, message="waiting for a worker")
    enqueue(RUN_STAGE_TASK, job.pk, job.stage)
    return job


def start_poster(collection, params, again=None):
    """Render a poster of the collection's current map. `params` are PosterSpec's fields;
    raises PosterError (a ValueError) with every reason when they cannot make a poster."""
    from django.conf import settings

    from explorer.maps import snapshot
    from explorer.models import Poster
    from workers.pipeline.posters import PosterError, PosterSpec, fills_a_cell

    spec = PosterSpec.from_dict(params).validate(settings.POSTER_MAX_PIXELS)
    current = snapshot(collection)
    if current is None:
        raise PosterError(f"collection {collection.name!r} has no map yet")
    if not fills_a_cell(spec, current.layout):
        raise PosterError("no frame lies in this window of the map: move or widen it, or use empty=nearest")
    job = Job.objects.create(collection=collection, kind=Job.Kind.POSTER, stage="poster",
                             params={"again": again} if again else {}, message="waiting for a worker")
    poster = Poster.objects.create(collection=collection, job=job, params=spec.as_dict(), map_version=current.version)
    enqueue(RUN_STAGE_TASK, job.pk, job.stage)
    return poster


def cancel(job):
    """Cancel a queued or running job; False when it had finished already. What it has not
    begun is never run, a running stage stops at its next progress report, and the map being
    served stays as it is (workers/jobflow.py)."""
    from workers.jobflow import cancel as cancel_job

    return cancel_job(job.pk)


def enqueue(task_name, *args, countdown=None, patience=0.0):
    """Send the task once the current transaction commits (at once outside one); see send."""
    transaction.on_commit(lambda: send(task_name, *args, countdown=countdown, patience=patience))


def send(task_name, *args, countdown=None, patience=0.0):
    """Send a task message; returns whether it went. The Job rows are the truth and a message
    only wakes a worker, so a broker that cannot be reached fails nothing: the send is tried
    again with backoff for up to `patience` seconds, then given up with a warning. The job,
    whose row still says what comes next, stops reporting, and the recovery in every worker
    (workers/recovery.py) resumes it once the broker is back."""
    deadline, pause = time.monotonic() + patience, 0.5
    while True:
        try:
            celery_app.send_task(task_name, args=list(args), countdown=countdown)
            return True
        except BrokerUnreachable as exc:
            if time.monotonic() + pause > deadline:
                log.warning("%s%s not sent, the broker is unreachable (%s): recovery resends it once it is back",
                            task_name, tuple(args), exc)
                return False
            time.sleep(pause)
            pause = min(2 * pause, 10.0)
