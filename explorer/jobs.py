"""Starting jobs. Tasks are sent by name after the transaction commits, so a worker
never looks for a row that is not there yet, and the web process never imports
the pipeline."""
from django.db import transaction

from explorer.models import Job
from workers.celery import app as celery_app


class NotReady(ValueError):
    """The collection cannot do this yet (no frames to train on, no map for a poster)."""


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
        raise NotReady(f"collection {collection.name!r} has no sampled frames to train on: ingest media first")
    job = Job.objects.create(collection=collection, kind=Job.Kind.TRAIN, stage="features",
                             params={"embed": True}, message="waiting for a worker")
    enqueue(RUN_STAGE_TASK, job.pk, job.stage)
    return job


def poster_spec(params):
    """The PosterSpec of `params` within this server's limits, or PosterError with every reason."""
    from django.conf import settings

    from workers.pipeline.posters import PosterSpec

    return PosterSpec.from_dict(params).validate(settings.POSTER_MAX_PIXELS, settings.POSTER_MAX_CELLS)


def current_map(collection):
    """The map a poster of the collection is made from, or NotReady."""
    from explorer.maps import snapshot

    current = snapshot(collection)
    if current is None:
        raise NotReady(f"collection {collection.name!r} has no map yet")
    return current


def start_poster(collection, params, again=None):
    """Render a poster of the collection's current map. `params` are PosterSpec's fields;
    raises PosterError (a ValueError) with every reason when they cannot make a poster, and
    NotReady when the collection has no map."""
    from explorer.models import Poster
    from workers.pipeline.posters import PosterError, fills_a_cell

    spec = poster_spec(params)
    current = current_map(collection)
    if not fills_a_cell(spec, current.layout):
        raise PosterError("no frame lies in this window of the map: move or widen it, or use empty=nearest")
    job = Job.objects.create(collection=collection, kind=Job.Kind.POSTER, stage="poster",
                             params={"again": again} if again else {}, message="waiting for a worker")
    poster = Poster.objects.create(collection=collection, job=job, params=spec.as_dict(), map_version=current.version)
    enqueue(RUN_STAGE_TASK, job.pk, job.stage)
    return poster


def enqueue(task_name, *args, countdown=None):
    transaction.on_commit(lambda: celery_app.send_task(task_name, args=list(args), countdown=countdown))
