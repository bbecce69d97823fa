"""The `duplicates` stage: finds copies among the files of the collection's map (after every
new map, and when asked with another threshold): near-duplicate photos and frames, copies of
videos and clips cut from longer ones (workers/pipeline/copies.py), made into groups with one
representative each (workers/pipeline/copy_groups.py), beside the exact copies the scan
passed over (SameContent).

A detection is a Duplicates row and its files, made from one published map version; the
collection shows the latest. Job params of a `duplicates` job: {"threshold"}; an ingest or a
train job uses the collection's last threshold (or DUPLICATES_THRESHOLD).
"""
import functools
import logging

from django.conf import settings
from django.db import transaction

from explorer.models import Collection, Duplicates, Job, Source
from workers import lifecycle
from workers.pieces import job_progress
from workers.stages import Report

log = logging.getLogger(__name__)
STAGE = "duplicates"  # this module's stage in the registry
POINTS_CACHE = 1024  # frames' keypoints kept while comparing (about 180 kB each)


def wanted(job):
    return job.kind == Job.Kind.DUPLICATES or settings.DUPLICATES_AFTER_MAP


def threshold_for(job):
    """The job's own threshold, else the collection's last detection's."""
    if job.kind == Job.Kind.DUPLICATES and job.params.get("threshold") is not None:
        return float(job.params["threshold"])
    current = job.collection.duplicates
    return current.threshold if current else settings.DUPLICATES_THRESHOLD


def find(job):
    from workers.pipeline.copies import Files, find_stretches
    from workers.pipeline.copy_groups import group_copies
    from workers.pipeline.frame_match import MomentPoints, frame_points
    from workers.pipeline.map_versions import MapSnapshot

    collection = job.collection
    version = collection.embedding.get("map")
    if not version:
        raise RuntimeError(f"collection {collection.name!r} has no map to look for copies in yet")
    threshold = threshold_for(job)
    current = collection.duplicates
    if job.kind != Job.Kind.DUPLICATES and current is not None and current.map_version == version:
        return  # the map did not change: neither did its copies
    snapshot = MapSnapshot(collection.maps_dir / version, collection.sources_dir)
    lifecycle.update(job.pk, progress=0.0, message=f"looking for copies among {len(snapshot)} frame(s)")

    @functools.lru_cache(maxsize=POINTS_CACHE)
    def points_of(row):
        return frame_points(snapshot.frame_pixels(row))

    @functools.lru_cache(maxsize=POINTS_CACHE)
    def mirrored_points_of(row):
        return frame_points(snapshot.frame_pixels(row), mirrored=True)

    files = Files(sources=snapshot.index["source"], times=snapshot.index["time"])
    spans = files.spans

    def sampled_size(source):
        pixels = snapshot.frame_pixels(spans[source][0])
        return None if pixels is None else (pixels.shape[1], pixels.shape[0])

    videos = dict(Source.objects.filter(pk__in=list(spans), kind=Source.Kind.VIDEO).values_list("pk", "path"))
    moments = MomentPoints(videos, sampled_size, budget=settings.DUPLICATES_EXACT_MOMENTS)
    stretches = find_stretches(snapshot.vectors, files, points_of, progress=job_progress(job.pk, span=0.9),
                               mirrored_points_of=mirrored_points_of if settings.DUPLICATES_MIRRORED else None,
                               exact_points_of=moments)
    for source, reason in moments.failures.items():  # its sampled frames were compared all the same
        log.warning("copies: source %s not read at exact moments: %s", source, reason)
    groups, relations, copy_of = group_copies(stretches, spans, files.times, threshold, rank=_originality(spans))
    _save(job, snapshot, threshold, groups, relations, copy_of)


def _originality(spans):
    """{source: key}, lower is more original: the longer file, then the one of more pixels,
    then the one ingested first (a re-encoded copy is usually shorter or smaller)."""
    known = Source.objects.filter(pk__in=list(spans)).values_list("pk", "duration", "width", "height")
    rank = {pk: (-(duration or 0.0), -((width or 0) * (height or 0)), pk) for pk, duration, width, height in known}
    return {pk: rank.get(pk, (0.0, 0, pk)) for pk in spans}  # a source removed since the map: least original


def _save(job, snapshot, threshold, groups, relations, copy_of):
    """Record the detection, with the map's cells without the copies (for "hide copies"),
    and make it current, unless the map changed meanwhile."""
    import shutil

    from workers.pipeline.copy_groups import save
    from workers.pipeline.map_versions import save_cells_without

    collection, version = job.collection, snapshot.version
    lifecycle.update(job.pk, progress=0.95, message=f"saving {len(groups)} group(s) of copies")
    made = Duplicates.objects.create(collection=collection, job=job, map_version=version, threshold=threshold,
                                     groups=len(groups), relations=len(relations),
                                     copied_frames=int((copy_of >= 0).sum()))
    try:
        details = {"map": version, "threshold": threshold, "detection": made.pk}
        made.directory.mkdir(parents=True, exist_ok=True)
        produced_by = {"stage": STAGE, **details}
        offsets = save_cells_without(snapshot, copy_of >= 0, made.directory, produced_by)
        save(made.directory, groups, relations, copy_of, {**details, "cell_offsets": offsets}, produced_by)
        with transaction.atomic():
            lifecycle.update(job.pk, progress=1.0)  # raises JobCancelled: a cancelled job changes nothing
            if not Collection.objects.filter(pk=collection.pk, embedding__map=version).update(duplicates=made):
                raise RuntimeError("the map changed while its copies were looked for: look for them again")
    except BaseException:
        made.delete()
        shutil.rmtree(made.directory, ignore_errors=True)
        raise
    # The detection replaced stays (a page drawn from it keeps its tiles); older ones go, but
    # for one another job is still making.
    older = Duplicates.objects.filter(collection=collection, pk__lt=made.pk).order_by("-pk")
    for old in older.exclude(job__status__in=(Job.Status.QUEUED, Job.Status.RUNNING))[1:]:
        directory = old.directory
        old.delete()
        shutil.rmtree(directory, ignore_errors=True)


def report(job):
    made = Duplicates.objects.filter(job=job).first()  # ordered newest first
    if made is None:
        return Report()
    if not made.groups:
        return Report(("no copies",))
    return Report((f"{made.groups} group(s) of copies ({made.copied_frames} frame(s) copy another)",))
