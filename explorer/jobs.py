"""Starting and cancelling jobs, for the command line and the API alike. Tasks are sent
by name after the transaction commits, so a worker never looks for a row that is not
there yet, and the web process never imports the pipeline's workers (a test checks). Starting a job identical to
one that is queued or running (same kind, collection and parameters) returns that job,
marked `reused`, instead of queuing another."""
import math
from contextlib import contextmanager

from django.db import transaction
from django.db.models import F

from explorer.models import Collection, Job
from workers import lifecycle, stages
from workers.celery import send
from workers.pipeline.cutouts import DEFAULT_CLUSTERS


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


def start_duplicates(collection, threshold):
    """Look for copies in the collection's map again, calling a copy what scores `threshold`
    or more (workers/stages/duplicates.py); or return the identical job already queued or
    running. NotReady when the collection has no map yet."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the threshold is a probability, from 0 to 1: got {threshold}")
    current_map(collection)
    params = {"threshold": threshold}
    with _one_start_at_a_time(collection):
        return (_open_identical(collection, Job.Kind.DUPLICATES, params)
                or _create(collection, Job.Kind.DUPLICATES, params))


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


GIF_DEFAULTS = {"colours": 16, "distance": "euclidean", "seeding": "sequential", "fps": 10.0, "width": 480,
                "palette_from": None}
GIF_MAX_FRAMES = 300  # frames a GIF may hold; with GIF_MAX_WIDTH at 16:9, the pixels a worker holds at once


class GifError(ValueError):
    """A clip or parameters that cannot make a GIF; the message gives every reason."""


def gif_problems(source, start, stop, params):
    """Every reason these parameters cannot make a GIF of `source` from `start` to `stop`
    seconds (an empty list when they can), in words a person can act on."""
    from django.conf import settings

    from workers.pipeline.palette import DISTANCES, MAX_COLOURS, MIN_COLOURS, SEEDINGS

    problems = []
    if source.status != source.Status.READY:
        problems.append(f"source {source.pk} ({source.path}) is {source.status}, not sampled")
    unknown = sorted(set(params) - set(GIF_DEFAULTS))
    if unknown:
        problems.append(f"unknown GIF parameter(s): {', '.join(unknown)}")
    if not MIN_COLOURS <= params["colours"] <= MAX_COLOURS:
        problems.append(f"colours must be {MIN_COLOURS} to {MAX_COLOURS}, not {params['colours']}")
    for name, allowed in (("distance", DISTANCES), ("seeding", SEEDINGS)):
        if params[name] not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)}, not {params[name]!r}")
    if not 16 <= params["width"] <= settings.GIF_MAX_WIDTH:
        problems.append(f"width must be 16 to {settings.GIF_MAX_WIDTH} pixels (GIF_MAX_WIDTH), not {params['width']}")
    if not 0 < params["fps"] <= settings.GIF_MAX_FPS:
        problems.append(f"fps must be above 0 and at most {settings.GIF_MAX_FPS:g} (GIF_MAX_FPS), not {params['fps']}")
    reference = params["palette_from"]
    if isinstance(reference, dict) and "source" in reference:
        other = source.collection.sources.filter(pk=reference["source"]).first()
        if other is None or other.status != other.Status.READY:
            problems.append(f"palette_from: source {reference['source']} is not a sampled source of this collection")
        elif other.kind == other.Kind.VIDEO and not 0 <= reference["time"] < other.known_duration:
            problems.append(f"palette_from: {other.path} has no frame at {reference['time']:g} s "
                            f"(it lasts {other.known_duration:.1f} s)")
    frames = 1  # a photo is a one-frame GIF, whatever the times
    if source.kind == source.Kind.VIDEO:
        duration = source.known_duration
        frames = math.ceil((min(stop, duration) - start) * params["fps"])
        if not 0 <= start < stop:
            problems.append(f"the clip must start at 0 s or later and stop after it starts, not {start:g}-{stop:g} s")
        elif start >= duration:
            problems.append(f"the clip {start:g}-{stop:g} s starts past the end of {source.path} ({duration:.1f} s)")
        elif min(stop, duration) - start > settings.GIF_MAX_SECONDS:  # a clip past the end runs to the end
            problems.append(f"the clip is {min(stop, duration) - start:g} s long: at most "
                            f"{settings.GIF_MAX_SECONDS:g} s (GIF_MAX_SECONDS)")
    # What the worker holds: every frame, at the width asked and the height the source's shape gives.
    height = round(params["width"] * (source.height or 9) / (source.width or 16))
    budget = GIF_MAX_FRAMES * settings.GIF_MAX_WIDTH * round(settings.GIF_MAX_WIDTH * 9 / 16)
    if frames > GIF_MAX_FRAMES or frames * params["width"] * height > budget or height > 4 * settings.GIF_MAX_WIDTH:
        problems.append(f"{frames} frame(s) of {params['width']}x{height} pixels is more than a GIF may hold (at most "
                        f"{GIF_MAX_FRAMES} frames, {budget / 1e6:.0f} million pixels): lower fps or width, or "
                        "shorten the clip")
    return problems


def start_gif(collection, source, start, stop, params, palette_image=None):
    """Make an animated GIF of `source` (a Source of the collection) from `start` to `stop`
    seconds; `params` override GIF_DEFAULTS, and `palette_image` (an RGB array) is a picture
    whose colours the GIF takes. GifError with every reason when it cannot be made; returns
    the Gif row, or the identical one queued or being made (`reused`)."""
    from explorer.models import Gif
    from workers.pipeline.images import encode_png

    params = {**GIF_DEFAULTS, **params, **({"palette_from": {"image": True}} if palette_image is not None else {})}
    problems = gif_problems(source, start, stop, params)
    if problems:
        raise GifError("; ".join(problems))
    if source.kind == source.Kind.PHOTO:
        start = stop = 0.0
    else:
        stop = min(stop, source.known_duration)  # a clip asked past the end runs to the end
    with _one_start_at_a_time(collection):
        making = None if palette_image is not None else next((gif for gif in Gif.objects.filter(
            job__in=_open_jobs(collection, Job.Kind.GIF), source=source, start=start, stop=stop).select_related("job")
            if gif.params == params), None)
        if making is not None:
            making.reused = making.job.reused = True
            return making
        job = _create(collection, Job.Kind.GIF, {})
        gif = Gif.objects.create(collection=collection, job=job, source=source, start=start, stop=stop, params=params)
        if palette_image is not None:
            gif.palette_image_path.parent.mkdir(parents=True, exist_ok=True)
            gif.palette_image_path.write_bytes(encode_png(palette_image))
        gif.reused = False
        return gif


def start_cutouts(collection, clusters=DEFAULT_CLUSTERS, background="corners", position=False):
    """Cut every sampled frame of the collection out of its plain background (k-means on its
    colours, and with `position` on where each pixel is too; RGBA PNGs kept beside its frames,
    for scatter posters); ValueError on impossible parameters, NotReady without frames. Or
    return the identical job already queued or running."""
    from workers.pipeline.cutouts import BACKGROUNDS, CLUSTER_RANGE

    params = {"clusters": clusters, "background": background, "position": bool(position)}
    if not CLUSTER_RANGE[0] <= params["clusters"] <= CLUSTER_RANGE[1]:
        raise ValueError(f"clusters must be {CLUSTER_RANGE[0]} to {CLUSTER_RANGE[1]}, not {params['clusters']}")
    if params["background"] not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, not {params['background']!r}")
    if not lifecycle.collection_has_frames(collection):
        raise NotReady(f"collection {collection.name!r} has no sampled frames yet")
    with _one_start_at_a_time(collection):
        return _open_identical(collection, Job.Kind.CUTOUTS, params) or _create(collection, Job.Kind.CUTOUTS, params)


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
