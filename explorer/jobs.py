"""Starting and cancelling jobs, for the command line and the API alike. Tasks are sent
by name after the transaction commits, so a worker never looks for a row that is not
there yet, and the web process never imports the pipeline's workers (a test checks). Starting a job identical to
one that is queued or running (same kind, collection and parameters) returns that job,
marked `reused`, instead of queuing another."""
from contextlib import contextmanager

from django.db import transaction
from django.db.models import F

from explorer.models import Collection, Job
from workers import lifecycle, stages
from workers.celery import send


class NotReady(ValueError):
    """The collection cannot do this yet (no frames to train on, no map for a poster)."""


def start_ingest(collection, paths, embed=True, roots=None):
    """Sample the files under `paths`; with `embed`, go on to place them on the map.
    With `roots` (a job started from the web), every file found must resolve inside them.
    Returns the job, or an identical one that has not listed its files yet: once it has,
    the same folders may hold new files, and a new ingest (cheap for the files it knows)
    is what finds them."""
    params = {"paths": [str(p) for p in paths], "embed": embed}
    if roots is not None:
        params["roots"] = [str(r) for r in roots]
    with _one_start_at_a_time(collection):
        # Only one that has not left its first stage: see above.
        return _open_identical(collection, Job.Kind.INGEST, params, at_first_stage=True) or _create(
            collection, Job.Kind.INGEST, params)


def start_training(collection):
    """Refit PCA and retrain the autoencoder on every frame of the collection; or return
    the identical retraining already queued or running."""
    params = {"embed": True}
    with _one_start_at_a_time(collection):
        if not lifecycle.collection_has_frames(collection):
            raise NotReady(f"collection {collection.name!r} has no sampled frames to train on: "
                           "ingest media first")
        return _open_identical(collection, Job.Kind.TRAIN, params) or _create(collection, Job.Kind.TRAIN, params)


def poster_spec(params):
    """The PosterSpec of `params` within this server's limits, or PosterError with every reason."""
    from django.conf import settings

    from workers.pipeline.posters import PosterSpec

    return PosterSpec.from_dict(params).validate(settings.POSTER_MAX_PIXELS, settings.POSTER_MAX_CELLS)


def current_map(collection):
    """The map a poster of the collection is made from, or NotReady."""
    from explorer.served_maps import snapshot

    current = snapshot(collection)
    if current is None:
        raise NotReady(f"collection {collection.name!r} has no map yet")
    return current


def start_poster(collection, params, again=None):
    """Render a poster of the collection's current map. `params` are PosterSpec's fields;
    raises PosterError (a ValueError) with every reason when they cannot make a poster, and
    NotReady when the collection has no map. Returns the poster, or the identical one (same
    parameters, same map) already queued or being rendered."""
    from explorer.models import Poster
    from workers.pipeline.posters import PosterError, fills_a_cell

    spec = poster_spec(params)
    current = current_map(collection)
    if not fills_a_cell(spec, current.layout):
        raise PosterError("no frame lies in this window of the map: move or widen it, or use empty=nearest")
    with _one_start_at_a_time(collection):
        rendering = next((poster for poster in Poster.objects.filter(
            job__in=_open_jobs(collection, Job.Kind.POSTER), map_version=current.version).select_related("job")
            if poster.params == spec.as_dict()), None)
        if rendering is not None:
            rendering.reused = rendering.job.reused = True
            return rendering
        job = _create(collection, Job.Kind.POSTER, {"again": again} if again else {})
        poster = Poster.objects.create(collection=collection, job=job, params=spec.as_dict(),
                                       map_version=current.version)
        poster.reused = False
        return poster


def start_clustering(collection, params):
    """Group the collection's map again with `params` (method, k, preference, damping,
    over; workers/stages/clusters.py); or return the identical grouping already queued or
    running. NotReady when the collection has no map yet; ValueError when k is more than
    the map's frames."""
    frames = len(current_map(collection))
    if params.get("k") and params["k"] > frames:
        raise ValueError(f"cannot make {params['k']} clusters of a map of {frames} frame(s): ask for at most {frames}")
    with _one_start_at_a_time(collection):
        return _open_identical(collection, Job.Kind.CLUSTER, params) or _create(collection, Job.Kind.CLUSTER, params)


def start_cluster_edit(collection, edit, user=None):
    """Merge clusters ({"edit": "merge", "clusters": [a, b, ...]}) or split one ({"edit":
    "split", "cluster": c, "k": k}) of the collection's current grouping, as a job (a
    merge re-describes every frame). NotReady when there is no grouping to edit."""
    from explorer.labels import actor

    if collection.clustering_id is None:
        raise NotReady(f"collection {collection.name!r} has no clusters yet: cluster it first")
    person, who = actor(user)
    params = {**edit, "clustering": collection.clustering_id, "by": person.pk if person else None, "who": who}
    with _one_start_at_a_time(collection):
        return _open_identical(collection, Job.Kind.CLUSTER, params) or _create(collection, Job.Kind.CLUSTER, params)


def start_tagging(collection, head="softmax", fine_tune=False):
    """Train a tagger with a `head` (workers/pipeline/tagger.py HEADS) on the collection's
    labels, then tag every frame of its map; with `fine_tune`, also fine-tune the top blocks
    of Xception and report them beside it. Or return the identical training already queued
    or running. NotReady when there is no map or too few labels (saying how many more are
    needed)."""
    from explorer.labels import tagger_readiness

    current_map(collection)
    _, needed = tagger_readiness(collection)
    if needed:
        raise NotReady(needed)
    params = {"head": head, **({"fine_tune": True} if fine_tune else {})}
    with _one_start_at_a_time(collection):
        return _open_identical(collection, Job.Kind.TAG, params) or _create(collection, Job.Kind.TAG, params)


@contextmanager
def _one_start_at_a_time(collection):
    """A transaction in which no other job starts on this collection, so that two identical
    requests at once make one job: its first statement writes the collection's row
    unchanged, which locks that row on PostgreSQL, and on SQLite (where SELECT ... FOR
    UPDATE means nothing) takes the database's write lock before anything is read."""
    with transaction.atomic():
        Collection.objects.filter(pk=collection.pk).update(name=F("name"))
        yield


def _open_jobs(collection, kind):
    return Job.objects.filter(collection=collection, kind=kind, status__in=(Job.Status.QUEUED, Job.Status.RUNNING))


def _open_identical(collection, kind, params, at_first_stage=False):
    """The job of this kind and these parameters that is queued or running on the collection
    (still at its first stage, if so asked), marked `reused`; None when there is none.
    Parameters are compared here, not in SQL, where JSON equality differs between databases
    (and a collection has few open jobs)."""
    jobs = _open_jobs(collection, kind)
    if at_first_stage:
        jobs = jobs.filter(stage=stages.first_for(kind))
    job = next((job for job in jobs if job.params == params), None)
    if job is not None:
        job.reused = True
    return job


def _create(collection, kind, params):
    job = Job.objects.create(collection=collection, kind=kind, stage=stages.first_for(kind), params=params,
                             message="waiting for a worker")
    job.reused = False
    enqueue(stages.RUN_STAGE_TASK, job.pk, job.stage)
    return job


def cancel(job):
    """Cancel a queued or running job; False when it had finished already. What it has not
    begun is never run, a running stage stops at its next progress report, and the map being
    served stays as it is (workers/lifecycle.py)."""
    return lifecycle.cancel(job.pk)


def enqueue(task_name, *args, countdown=None, patience=0.0):
    """Send the task once the current transaction commits (at once outside one); see
    workers.celery.send."""
    transaction.on_commit(lambda: send(task_name, *args, countdown=countdown, patience=patience))
