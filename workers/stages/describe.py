"""The `features` stage: every sampled frame described with Xception, in work items of up to
FEATURE_CHUNK frames of a source, written next to the source's frames; a task takes several
items at once when they are small."""
import functools
import logging

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from explorer.models import Job, Source, WorkItem
from workers import lifecycle
from workers.pieces import FanOut, add_chunks
from workers.pipeline.arrays import ArrayWriter, RowsOf, open_array, read_manifest
from workers.stages import Report
from workers.tasks import job_task

log = logging.getLogger(__name__)

STAGE = "features"  # this module's stage in the registry (WorkItem.stage of its pieces)


def embedded_sources(collection):
    """The sources on the map, in map order: every row of the embedding arrays follows it."""
    return list(collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).order_by("pk"))


def weights_identity():
    return _identity_of(settings.XCEPTION_WEIGHTS)


@functools.lru_cache(maxsize=4)  # per process: hashing an 80 MB weights file takes a moment
def _identity_of(weights):
    from workers.pipeline.features import weights_identity as identify

    return identify(weights)


def features_made_from(source, precision):
    """What a source's feature chunks must have been made from to be current."""
    return {"stage": STAGE, "weights": weights_identity(), "precision": precision,
            "frames": read_manifest(source.frames_dir, "frames")["produced_by"]}


def source_features(source, precision):
    """The source's feature chunks, or None when some chunk is missing (it failed)."""
    from workers.pipeline.features import read_feature_chunks

    return read_feature_chunks(source.frames_dir, source.frame_count, features_made_from(source, precision))


def feature_precision(job):
    """The precision of the job's features, which names their runtime too (float32 or
    another Keras policy; openvino-bf16 or openvino-f32), decided once when its features
    stage begins and recorded on the job: every chunk of the job is made in it, whatever the
    worker that takes the chunk would pick, so that workers on CPUs with and without
    bfloat16, or with other runtimes, never mix them in a collection.

    FEATURE_PRECISION set to a name decides it; features made in another are made again
    (their produced_by no longer matches), and PCA and the autoencoder are fitted again on
    them. `auto` keeps the collection's precision (the one its PCA was fitted on), and only
    a collection without one takes what auto means on the worker that begins the stage."""
    from workers.pipeline.features import resolve_precision

    if "feature_precision" not in job.params:
        pca_state = read_manifest(job.collection.models_dir, "pca")
        if settings.FEATURE_PRECISION == "auto" and pca_state and pca_state.get("precision"):
            precision = pca_state["precision"]
        else:
            precision = resolve_precision(settings.FEATURE_PRECISION, settings.FEATURE_RUNTIME)
        job.params = {**job.params, "feature_precision": precision}
        Job.objects.filter(pk=job.pk).update(params=job.params)
    return job.params["feature_precision"]


def prepare(job):
    """A work item per chunk of frames not yet described with these weights in this precision."""
    precision = feature_precision(job)
    for source in embedded_sources(job.collection):
        if source_features(source, precision) is not None:
            continue  # already described with these weights, in this precision
        add_chunks(job, STAGE, source, settings.FEATURE_CHUNK)


# A message carries chunks up to FEATURE_CHUNK frames together, of one source or of many
# (a folder of photos: a chunk each): the network's batches span them.
DESCRIBING = FanOut("workers.tasks.features", WorkItem, lambda: WorkItem.objects.filter(stage=STAGE),
                    job_link="job", done_label="feature chunk(s) done",
                    work=F("stop") - F("start"), budget=lambda: settings.FEATURE_CHUNK)


@job_task(DESCRIBING.task, pieces=DESCRIBING)
def features(self, job_id, item_ids):
    """Describe the message's chunks of frames with Xception, as one stream of frames."""
    DESCRIBING.run_together(self.request.id, job_id, item_ids, _describe_chunks)


def _describe_chunks(job_id, items):
    from workers.pipeline.features import WeightsError, XceptionFeatures, chunk_name, runtime_of
    from workers.pipeline.xception_openvino import RuntimeUnavailable

    precision = feature_precision(items[0].job)
    if settings.FEATURE_PRECISION not in ("auto", precision):
        log.warning("FEATURE_PRECISION is %s here, but job %s describes its collection in %s: its chunks are "
                    "made in %s, so the collection does not mix precisions",
                    settings.FEATURE_PRECISION, job_id, precision, precision)
    elif settings.FEATURE_RUNTIME not in ("auto", runtime_of(precision)):
        log.warning("FEATURE_RUNTIME is %s here, but job %s describes its collection in %s: its chunks are "
                    "made with %s, so the collection does not mix runtimes",
                    settings.FEATURE_RUNTIME, job_id, precision, precision)
    frames = RowsOf([open_array(item.source.frames_dir, "frames")[item.start:item.stop] for item in items])
    extractor = XceptionFeatures(settings.XCEPTION_WEIGHTS, batch_size=settings.FEATURE_BATCH, precision=precision,
                                 models_dir=settings.FEATURE_MODELS_DIR)
    try:
        described = extractor.transform(frames, progress=DESCRIBING.progress_writer(job_id, [i.pk for i in items]))
    except (WeightsError, RuntimeUnavailable) as exc:
        # Not these chunks' fault: the whole job cannot go on until the setting or the worker is fixed.
        lifecycle.fail(job_id, f"XCEPTION_WEIGHTS={settings.XCEPTION_WEIGHTS}: {exc}" if isinstance(exc, WeightsError)
                       else str(exc))
        WorkItem.objects.filter(pk__in=[item.pk for item in items]).update(status=WorkItem.Status.FAILED,
                                                                          error=str(exc))
        return
    for item, rows in zip(items, frames.split(described)):
        made_from = {**features_made_from(item.source, precision), "start": item.start, "stop": item.stop}
        with ArrayWriter(item.source.frames_dir, chunk_name(item.start), (rows.shape[1],), rows.dtype,
                         made_from) as out:
            out.append(rows)
        WorkItem.objects.filter(pk=item.pk).update(status=WorkItem.Status.DONE, progress=1.0,
                                                   heartbeat=timezone.now())


def report(job):
    failed = job.items.filter(stage=STAGE, status=WorkItem.Status.FAILED).count()
    return Report((f"{failed} feature chunk(s) failed",) if failed else (), failed=failed)
