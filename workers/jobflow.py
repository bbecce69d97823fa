"""Which stage comes next, and closing or cancelling a job. Database only: no pipeline here.

A job walks Job.STAGES in order and skips what it does not need: an ingest that
is told not to embed stops after sampling; an ingest into a collection that
already has a trained model places the new frames with it (no training); a train
job starts at features and refits everything.
"""
from django.db.models import Q
from django.utils import timezone

from explorer.models import Collection, Job, Source, WorkItem
from workers.pipeline.arrays import read_manifest

# Skip reasons that are information, not failure: the job still succeeds.
BENIGN_SKIPS = ("not a video or photo (unknown file extension)", "same content as ")


class JobCancelled(Exception):
    """Raised where a cancelled job's work reports progress: the work stops there. Not a
    failure: the task that catches it ends normally."""


def needs(job, stage):
    """Whether `job` has anything to do in `stage`."""
    if (stage == "poster") != (job.kind == Job.Kind.POSTER):
        return False  # a poster job renders and nothing else; no other job renders
    if stage not in ("features", "pca", "train", "layout"):
        return True
    collection = job.collection
    if not (job.params.get("embed", True)
            and collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).exists()):
        return False
    if stage == "train":
        return job.kind == Job.Kind.TRAIN or not model_matches_pca(collection)
    return True


def model_matches_pca(collection):
    """True when a trained model exists and was trained on the current PCA (a refit PCA,
    or a retraining that did not finish, leaves them apart: then it must train again)."""
    model = read_manifest(collection.models_dir, "layout")
    pca = read_manifest(collection.models_dir, "pca")
    return bool(model and pca and model["pca"] == pca["version"])


def hold_collection(job):
    """Take the collection's embedding for this job (pca, train, layout run one job at a
    time per collection). False when another unfinished job holds it."""
    return bool(Collection.objects.filter(pk=job.collection_id).filter(
        Q(embedding_job=None) | Q(embedding_job=job.pk) | Q(embedding_job__status__in=Job.FINISHED)
    ).update(embedding_job=job.pk))


def _release_collection(job_id):
    Collection.objects.filter(embedding_job=job_id).update(embedding_job=None)


def next_stage(job, after):
    stages = Job.STAGES
    for stage in stages[stages.index(after) + 1:]:
        if stage == "done" or needs(job, stage):
            return stage
    return "done"


def advance(job_id, finished_stage):
    """Move the job past `finished_stage`. Returns the new stage, or None when another
    worker already moved it (a conditional update: exactly one caller wins)."""
    job = Job.objects.select_related("collection").get(pk=job_id)
    stage = next_stage(job, finished_stage)
    moved = Job.objects.filter(pk=job_id, stage=finished_stage).exclude(status__in=Job.FINISHED).update(
        stage=stage, progress=0.0, message=f"{stage}: waiting for a worker" if stage != "done" else "",
        claimed_by="", updated_at=timezone.now())
    if not moved:
        return None
    if stage == "done":
        close(job_id)
    return stage


def close(job_id):
    """Finish the job with a status and a one-line summary of what came out of it."""
    job = Job.objects.select_related("collection").get(pk=job_id)
    sources = job.sources.all()
    ready = sources.filter(status=Source.Status.READY).count()
    failed = sources.filter(status=Source.Status.FAILED).count()
    failed_chunks = job.items.filter(status=WorkItem.Status.FAILED).count()
    problems = [s for s in job.skipped if not s["reason"].startswith(BENIGN_SKIPS)]
    parts = []
    if job.kind == Job.Kind.INGEST:
        frames = sum(sources.values_list("frame_count", flat=True))
        parts.append(f"{ready} file(s) sampled into {frames} frame(s)")
        if failed:
            parts.append(f"{failed} failed")
        if job.skipped:
            parts.append(f"{len(job.skipped)} skipped")
    embedding = job.collection.embedding
    if job.kind == Job.Kind.POSTER:
        poster = job.posters.first()
        parts.append(f"poster {poster.width}x{poster.height} {poster.params['format'].upper()}, "
                     f"{poster.cells} cell(s) filled" if poster and poster.file_size else "no poster")
    elif job.params.get("embed", True) and embedding.get("frames"):
        parts.append(f"map of {embedding['frames']} frame(s)")
    if failed_chunks:
        parts.append(f"{failed_chunks} feature chunk(s) failed")
    left_off = [s for s in job.skipped if s["reason"].startswith("left off the map")]
    if left_off:
        parts.append(f"{len(left_off)} file(s) left off the map")
    if job.kind == Job.Kind.INGEST and ready == 0:
        status, error = Job.Status.FAILED, "no file could be sampled"
    elif failed or problems or failed_chunks:
        status, error = Job.Status.PARTIAL, ""
    else:
        status, error = Job.Status.SUCCEEDED, ""
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=status, stage="done", progress=1.0, message=", ".join(parts), error=error,
        finished_at=timezone.now(), updated_at=timezone.now())
    _release_collection(job_id)


def fail(job_id, error):
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=Job.Status.FAILED, error=error, finished_at=timezone.now(), updated_at=timezone.now())
    _release_collection(job_id)


def cancel(job_id):
    """Cancel an unfinished job; False when it had finished already. What it has not begun
    is never run (a piece is claimed only for an open job), a running stage stops at its
    next progress report (update raises JobCancelled), and the collection's models are free
    for the next job. The map being served stays as it is: a stage publishes a new map only
    as its last step, and no cancelled stage gets there."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return False
    now = timezone.now()
    cancelled = Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=Job.Status.CANCELLED, message=f"cancelled during {job.stage}", claimed_by="", finished_at=now,
        updated_at=now)
    if cancelled:
        _release_collection(job_id)
    return bool(cancelled)


def update(job_id, **fields):
    """Report on an unfinished job (a finished job's row stays as it ended); raises
    JobCancelled when it was cancelled, so the work reporting stops."""
    if not Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(updated_at=timezone.now(),
                                                                                  **fields):
        if Job.objects.filter(pk=job_id, status=Job.Status.CANCELLED).exists():
            raise JobCancelled(job_id)
