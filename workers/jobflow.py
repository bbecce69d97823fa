"""Which stage comes next, and closing a job. Database only: no pipeline here.

A job walks Job.STAGES in order and skips what it does not need: an ingest that
is told not to embed stops after sampling; an ingest into a collection that
already has a trained model places the new frames with it (no training); a train
job starts at features and refits everything.
"""
from django.utils import timezone

from explorer.models import Job, Source, WorkItem

# Skip reasons that are information, not failure: the job still succeeds.
BENIGN_SKIPS = ("not a video or photo (unknown file extension)", "same content as ")


def needs(job, stage):
    """Whether `job` has anything to do in `stage`."""
    embed = job.params.get("embed", True)
    if stage in ("features", "pca", "layout"):
        return embed and job.collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).exists()
    if stage == "train":
        return embed and (job.kind == Job.Kind.TRAIN or not job.collection.embedding.get("model"))
    return True


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
        updated_at=timezone.now())
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
    if job.params.get("embed", True) and embedding.get("frames"):
        parts.append(f"map of {embedding['frames']} frame(s)")
    if failed_chunks:
        parts.append(f"{failed_chunks} feature chunk(s) failed")
    if job.kind == Job.Kind.INGEST and ready == 0:
        status, error = Job.Status.FAILED, "no file could be sampled"
    elif failed or problems or failed_chunks:
        status, error = Job.Status.PARTIAL, ""
    else:
        status, error = Job.Status.SUCCEEDED, ""
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=status, stage="done", progress=1.0, message=", ".join(parts), error=error,
        finished_at=timezone.now(), updated_at=timezone.now())


def fail(job_id, error):
    Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).update(
        status=Job.Status.FAILED, error=error, finished_at=timezone.now(), updated_at=timezone.now())


def update(job_id, **fields):
    Job.objects.filter(pk=job_id).update(updated_at=timezone.now(), **fields)
