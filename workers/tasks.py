"""Celery tasks: the only place where the database and the pipeline meet.

`run_stage(job, stage)` begins (or resumes) a stage of a job; the fanned-out
stages then run as one task per piece: `sample` per source, `features` per chunk
of frames. The last piece to finish moves the job on (workers/jobflow.py).
Every task is idempotent, so a redelivered or re-enqueued message is safe; see
workers/recovery.py for how lost messages are found and sent again.
"""
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from stat import S_ISREG

import numpy as np
from django.conf import settings
from django.db import OperationalError
from django.db.models import Avg, Count, F, Q
from django.utils import timezone

from explorer.jobs import FEATURES_TASK, RUN_STAGE_TASK, SAMPLE_TASK, send
from explorer.models import Collection, Job, Poster, Source, WorkItem
from workers import jobflow
from workers.celery import app
from workers.pipeline.arrays import ArrayWriter, open_array, read_manifest, write_json_atomic
from workers.pipeline.files import NotRegularFile, file_checksum, find_media, is_inside, media_kind
from workers.pipeline.sampling import MediaError, SamplingParams, sample_source

log = logging.getLogger(__name__)

# Only errors that may pass on their own are retried: a locked or restarting
# database. Bad media is not an error of the task; it is recorded on the source.
TRANSIENT = (OperationalError,)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 6}
INDEX_DTYPE = [("source", "<i8"), ("frame", "<i8"), ("time", "<f8")]


class Throttle:
    """Calls `write` at most every `interval` seconds (and always for the final 1.0)."""

    def __init__(self, write, interval=0.5):
        self.write, self.interval, self.last = write, interval, 0.0

    def __call__(self, fraction):
        now = time.monotonic()
        if fraction >= 1.0 or now - self.last >= self.interval:
            self.last = now
            self.write(fraction)


class FanOut:
    """A stage done as many pieces, one task each: which rows are its pieces, which task
    does one, what the progress message counts, and whether a piece is still wanted (some
    open job needs it: cancelling a job stops its pieces that no other job needs)."""

    def __init__(self, stage, task, model, pieces, done_label, wanted):
        self.stage, self.task, self.model, self.pieces, self.done_label = stage, task, model, pieces, done_label
        self.wanted = wanted
        self.terminal = model.TERMINAL

    def run(self, task_id, job_id, piece_id, work):
        """One piece's task: claim it, do `work(job_id, piece)` with a heartbeat, then move
        the job on if it was the last piece."""
        if _job_is_open(job_id) and claim(self.model, piece_id, task_id):
            try:
                with heartbeat(self.model, piece_id, "heartbeat"):
                    work(job_id, self.model.objects.get(pk=piece_id))
            except jobflow.JobCancelled:
                # Neither done nor failed: pending again for a later job, and this attempt
                # does not count towards MAX_ATTEMPTS.
                self.model.objects.filter(pk=piece_id, claimed_by=task_id).update(
                    status="pending", claimed_by="", progress=0.0, attempts=F("attempts") - 1)
                log.info("%s %s stopped: job %s was cancelled", self.model.__name__, piece_id, job_id)
                return
        self.finish_if_done(job_id)

    def progress_writer(self, job_id, piece_id):
        """A progress callback for one piece: its own progress, then the job's. Raises
        JobCancelled once no open job wants the piece."""
        def write(fraction):
            self.model.objects.filter(pk=piece_id).update(progress=fraction, heartbeat=timezone.now())
            if not self.wanted(job_id, piece_id):
                raise jobflow.JobCancelled(job_id)
            self.report(job_id)

        return Throttle(write)

    def enqueue_unfinished(self, job):
        # Pending pieces only: a running one has a live worker, or recovery makes it
        # pending again once its heartbeat stops.
        for piece_id in self.pieces(job).filter(status="pending").values_list("pk", flat=True):
            if not send(self.task, job.pk, piece_id, patience=settings.STALE_AFTER):
                return  # the broker is away: recovery resumes the stage, which sends the rest
        self.finish_if_done(job.pk)

    def report(self, job_id):
        """Write the job's progress over the pieces (one aggregate query). Best effort: a
        busy database must not stop the work it reports on."""
        try:
            figures = self.pieces(Job.objects.get(pk=job_id)).aggregate(
                mean=Avg("progress"), total=Count("pk"), done=Count("pk", filter=Q(status__in=self.terminal)))
            if figures["total"]:
                jobflow.update(job_id, progress=figures["mean"],
                               message=f"{figures['done']} of {figures['total']} {self.done_label}")
        except OperationalError:
            log.warning("progress of job %s not written (database busy)", job_id)
        except jobflow.JobCancelled:
            pass  # the piece goes on for another open job that needs it (see `wanted`)

    def finish_if_done(self, job_id):
        """Move the job on when its last piece is finished (any worker may call this)."""
        job = Job.objects.get(pk=job_id)
        if job.stage != self.stage:
            return
        self.report(job_id)
        if not self.pieces(job).exclude(status__in=self.terminal).exists():
            _begin_next(job_id, self.stage)


SAMPLING = FanOut("sample", SAMPLE_TASK, Source, lambda job: job.sources.all(), "file(s) sampled",
                  # A file may be in two jobs' ingests: it is sampled while either is open.
                  wanted=lambda job_id, source_id: Job.objects.filter(sources=source_id).exclude(
                      status__in=Job.FINISHED).exists())
DESCRIBING = FanOut("features", FEATURES_TASK, WorkItem, lambda job: job.items.filter(stage="features"),
                    "feature chunk(s) done", wanted=lambda job_id, item_id: _job_is_open(job_id))


def claim(model, pk, task_id):
    """Take a piece (a Source or a WorkItem) for this task: it must be pending, or already
    this task's (a redelivery of the same message after its process died). A duplicate
    message finds it taken and does nothing. A piece taken MAX_ATTEMPTS times already
    (its worker kept dying: out of memory, the time limit) is failed instead."""
    taken = model.objects.filter(pk=pk).filter(Q(status="pending") | Q(status="running", claimed_by=task_id)).update(
        status="running", claimed_by=task_id, heartbeat=timezone.now(), progress=0.0, attempts=F("attempts") + 1)
    if taken and model.objects.get(pk=pk).attempts > settings.MAX_ATTEMPTS:
        model.objects.filter(pk=pk).update(status="failed", progress=1.0, error=(
            f"gave up after {settings.MAX_ATTEMPTS} attempts: its worker stopped each time "
            "(out of memory? the task time limit?)"))
        return False
    return bool(taken)


def claim_stage(job_id, stage, task_id):
    """Take a single-task stage (or a fan-out stage's kick-off) for this task, unless a
    live task has it: one that is not this one and has reported within STALE_AFTER."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.STALE_AFTER)
    return bool(Job.objects.filter(pk=job_id, stage=stage).exclude(status__in=Job.FINISHED).filter(
        Q(claimed_by="") | Q(claimed_by=task_id) | Q(updated_at__lt=cutoff)
    ).update(claimed_by=task_id, updated_at=timezone.now()))


@contextmanager
def heartbeat(model, pk, field):
    """Touch `field` of the row every STALE_AFTER/4 seconds while the block runs, whatever
    its progress reports do: a long training epoch or a huge file to hash is not a dead worker."""
    from django.db import connection

    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(settings.STALE_AFTER / 4):
                model.objects.filter(pk=pk).update(**{field: timezone.now()})
        except Exception:  # a missed beat only risks a duplicate, never a wrong result
            log.exception("heartbeat of %s %s failed", model.__name__, pk)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class JobTask(app.Task):
    """Records a task's final, unexpected failure on its job, so nothing hangs as `running`."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = args[0]
        reason = f"{type(exc).__name__}: {exc}"
        if self.name == SAMPLE_TASK:
            Source.objects.filter(pk=args[1]).exclude(status__in=Source.TERMINAL).update(
                status=Source.Status.FAILED, error=f"internal error while sampling: {reason}", progress=1.0)
            SAMPLING.finish_if_done(job_id)
        elif self.name == FEATURES_TASK:
            WorkItem.objects.filter(pk=args[1]).exclude(status__in=WorkItem.TERMINAL).update(
                status=WorkItem.Status.FAILED, error=reason, progress=1.0)
            DESCRIBING.finish_if_done(job_id)
        else:
            jobflow.fail(job_id, f"stage {args[1]} failed: {reason}")


def _task(name):
    return app.task(base=JobTask, bind=True, name=f"workers.tasks.{name}", **RETRY)


EMBEDDING_STAGES = ("pca", "train", "layout")  # they rewrite the collection's models and map


@_task("run_stage")
def run_stage(self, job_id, stage):
    """Begin or resume `stage` of the job; a no-op when the job is elsewhere already or a
    live task runs this stage. A cancelled job's stage stops at its next progress report."""
    if not claim_stage(job_id, stage, self.request.id):
        return
    try:
        _run_stage(job_id, stage)
    except jobflow.JobCancelled:
        log.info("stage %s stopped: job %s was cancelled", stage, job_id)


def _run_stage(job_id, stage):
    job = Job.objects.select_related("collection").get(pk=job_id)
    if job.status == Job.Status.QUEUED:
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, started_at=timezone.now())
    if stage in EMBEDDING_STAGES and not jobflow.hold_collection(job):
        holder = Collection.objects.get(pk=job.collection_id).embedding_job_id
        jobflow.update(job_id, claimed_by="", message=f"waiting for job {holder} to finish this collection's map")
        send(RUN_STAGE_TASK, job_id, stage, countdown=5, patience=settings.STALE_AFTER)
        return
    with heartbeat(Job, job_id, "updated_at"):
        STAGES[stage](job)


# --- scan and sample ---------------------------------------------------------------

def _scan(job):
    """Find the media under the job's paths and identify each file by checksum."""
    jobflow.update(job.pk, progress=0.0, message="looking for media files")
    files, skipped = find_media(job.params["paths"])
    # A link inside the allowed folders must not lead out of them: such files are never
    # sampled, nor served (explorer/media.py checks the same at every request).
    roots = job.allowed_folders
    inside = {path: is_inside(path, roots) for path in files}
    files = [path for path in files if inside[path]]
    skipped += [(str(p), "a link that leads outside the folders ingested from") for p, ok in inside.items() if not ok]
    report = Throttle(lambda f: jobflow.update(job.pk, progress=f, message=f"identifying files ({f:.0%})"))
    for number, path in enumerate(files):
        try:
            source, note = _source_for(job.collection, path)
        except NotRegularFile as exc:  # turned into a pipe or a device since it was found
            skipped.append((str(path), exc.reason))
        except OSError as exc:
            skipped.append((str(path), f"cannot read the file ({exc.strerror})"))
        else:
            job.sources.add(source)
            if note:
                skipped.append((str(path), note))
        report((number + 1) / len(files))
    Job.objects.filter(pk=job.pk).update(skipped=[{"path": p, "reason": r} for p, r in skipped])
    _begin_next(job.pk, "scan")


def _source_for(collection, path):
    """The collection's source for this file, created if its content is new.
    Returns (source, note) where note says why nothing new was made, if so."""
    stat = path.stat()
    if not S_ISREG(stat.st_mode):
        raise NotRegularFile(path, stat.st_mode)
    known = Source.objects.filter(collection=collection, path=str(path), size=stat.st_size,
                                  mtime=stat.st_mtime).first()
    if known:  # unchanged since it was last seen: no need to read it again
        _retry_if_failed(known)
        return known, ""
    checksum = file_checksum(path)
    source, created = Source.objects.get_or_create(
        collection=collection, checksum=checksum,
        defaults={"path": str(path), "size": stat.st_size, "mtime": stat.st_mtime,
                  "kind": media_kind(path) or Source.Kind.VIDEO},
    )
    if created or source.path == str(path):
        _retry_if_failed(source)
        return source, ""
    if not os.path.exists(source.path) or os.path.samefile(source.path, path):
        # The file moved, or the same file was reached by another path: follow it.
        Source.objects.filter(pk=source.pk).update(path=str(path), mtime=stat.st_mtime)
        return source, ""
    return source, f"same content as {source.path}"


def _retry_if_failed(source):
    """A file that failed is tried again when it is ingested again: settings (such as
    MAX_IMAGE_PIXELS) or the file may have changed, or the failure may have passed."""
    if source.status == Source.Status.FAILED:
        Source.objects.filter(pk=source.pk, status=Source.Status.FAILED).update(
            status=Source.Status.PENDING, error="", claimed_by="", progress=0.0, attempts=0)


def _job_is_open(job_id):
    return Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).exists()


@_task("sample")
def sample(self, job_id, source_id):
    """Sample one source into its frame store."""
    SAMPLING.run(self.request.id, job_id, source_id, _sample)


def _sample(job_id, source):
    params = SamplingParams(**source.collection.sampling)
    try:
        result = sample_source(source.path, source.frames_dir, params, source.checksum,
                               progress=SAMPLING.progress_writer(job_id, source.pk),
                               max_image_pixels=settings.MAX_IMAGE_PIXELS)
    except MediaError as exc:
        Source.objects.filter(pk=source.pk).update(status=Source.Status.FAILED, error=str(exc),
                                                   progress=1.0, heartbeat=timezone.now())
        log.warning("source %s failed: %s", source.pk, exc)
        return
    Source.objects.filter(pk=source.pk).update(
        status=Source.Status.READY, progress=1.0, error="", warning=result.warning,
        kind=result.kind, duration=result.duration, fps=result.fps, width=result.source_width,
        height=result.source_height, frame_count=result.frames, heartbeat=timezone.now(),
    )


def _begin_next(job_id, finished_stage):
    """Move the job on and send its next stage as a message of its own: a stage never runs
    inside another's task, so each has its own retries, time limit and failure record.
    The move is recorded first: with the broker away, the message waits for it (up to
    STALE_AFTER), and past that the job, silent, is resumed at its new stage by recovery."""
    stage = jobflow.advance(job_id, finished_stage)
    if stage and stage != "done":
        send(RUN_STAGE_TASK, job_id, stage, patience=settings.STALE_AFTER)


# --- features ------------------------------------------------------------------------

def _embedded_sources(collection):
    """The sources on the map, in map order: every row of the embedding arrays follows it."""
    return list(collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).order_by("pk"))


def _weights_identity():
    return _identity_of(settings.XCEPTION_WEIGHTS)


@functools.lru_cache(maxsize=4)  # per process: hashing an 80 MB weights file takes a moment
def _identity_of(weights):
    from workers.pipeline.features import weights_identity

    return weights_identity(weights)


def _features_made_from(source, precision):
    """What a source's feature chunks must have been made from to be current."""
    return {"stage": "features", "weights": _weights_identity(), "precision": precision,
            "frames": read_manifest(source.frames_dir, "frames")["produced_by"]}


def _feature_precision(job):
    """The precision of the job's features (a Keras policy such as float32), decided once
    when its features stage begins and recorded on the job: every chunk of the job is made
    in it, whatever the worker that takes the chunk would pick, so that workers on CPUs
    with and without bfloat16 never mix precisions in a collection.

    FEATURE_PRECISION set to a policy decides it; features made in another are made again
    (their produced_by no longer matches), and PCA and the autoencoder are fitted again on
    them. `auto` keeps the collection's precision (the one its PCA was fitted on), and only
    a collection without one takes what auto means on the worker that begins the stage."""
    from workers.pipeline.features import resolve_precision

    if "feature_precision" not in job.params:
        pca_state = read_manifest(job.collection.models_dir, "pca")
        if settings.FEATURE_PRECISION == "auto" and pca_state and pca_state.get("precision"):
            precision = pca_state["precision"]
        else:
            precision = resolve_precision(settings.FEATURE_PRECISION)
        job.params = {**job.params, "feature_precision": precision}
        Job.objects.filter(pk=job.pk).update(params=job.params)
    return job.params["feature_precision"]


def _begin_features(job):
    from workers.pipeline.features import read_feature_chunks

    precision = _feature_precision(job)
    for source in _embedded_sources(job.collection):
        made_from = _features_made_from(source, precision)
        if read_feature_chunks(source.frames_dir, source.frame_count, made_from) is not None:
            continue  # already described with these weights, in this precision
        for start in range(0, source.frame_count, settings.FEATURE_CHUNK):
            WorkItem.objects.get_or_create(job=job, stage="features", source=source, start=start, defaults={
                "stop": min(start + settings.FEATURE_CHUNK, source.frame_count)})
    DESCRIBING.enqueue_unfinished(job)


@_task("features")
def features(self, job_id, item_id):
    """Describe one chunk of a source's frames with Xception."""
    DESCRIBING.run(self.request.id, job_id, item_id, _describe_chunk)


def _describe_chunk(job_id, item):
    from workers.pipeline.features import WeightsError, XceptionFeatures, chunk_name

    source = item.source
    precision = _feature_precision(item.job)
    if settings.FEATURE_PRECISION not in ("auto", precision):
        log.warning("FEATURE_PRECISION is %s here, but job %s describes its collection in %s: chunk %s-%s of "
                    "source %s is made in %s, so the collection does not mix precisions",
                    settings.FEATURE_PRECISION, job_id, precision, item.start, item.stop, source.pk, precision)
    made_from = {**_features_made_from(source, precision), "start": item.start, "stop": item.stop}
    frames = open_array(source.frames_dir, "frames")[item.start:item.stop]
    extractor = XceptionFeatures(settings.XCEPTION_WEIGHTS, batch_size=settings.FEATURE_BATCH, precision=precision)
    try:
        described = extractor.transform(frames, progress=DESCRIBING.progress_writer(job_id, item.pk))
    except WeightsError as exc:
        # Not this chunk's fault: the whole job cannot go on until the setting is fixed.
        jobflow.fail(job_id, f"XCEPTION_WEIGHTS={settings.XCEPTION_WEIGHTS}: {exc}")
        WorkItem.objects.filter(pk=item.pk).update(status=WorkItem.Status.FAILED, error=str(exc))
        return
    with ArrayWriter(source.frames_dir, chunk_name(item.start), (described.shape[1],), described.dtype,
                     made_from) as out:
        out.append(described)
    WorkItem.objects.filter(pk=item.pk).update(status=WorkItem.Status.DONE, progress=1.0,
                                               heartbeat=timezone.now())


# --- pca, train, layout ------------------------------------------------------------

def _source_features(source, precision):
    """The source's feature chunks, or None when some chunk is missing (it failed)."""
    from workers.pipeline.features import read_feature_chunks

    return read_feature_chunks(source.frames_dir, source.frame_count, _features_made_from(source, precision))


def _mappable_sources(job):
    """The sources whose features are complete, in map order. The others are listed on
    the job with the error of their failed chunk, and left off the map."""
    mappable, left_off, precision = [], [], _feature_precision(job)
    for source in _embedded_sources(job.collection):
        if _source_features(source, precision) is not None:
            mappable.append(source)
            continue
        failed = WorkItem.objects.filter(source=source, status=WorkItem.Status.FAILED).exclude(error="")
        reason = failed.values_list("error", flat=True).last() or "its features are missing"
        left_off.append({"path": source.path, "reason": f"left off the map: {reason}"})
    if left_off:
        known = {(s["path"], s["reason"]) for s in job.skipped}
        job.skipped += [s for s in left_off if (s["path"], s["reason"]) not in known]
        Job.objects.filter(pk=job.pk).update(skipped=job.skipped)
    return mappable


def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _pca(job):
    """Fit PCA when needed (a train job, none yet, or other Xception weights or feature
    precision than it was fitted on); project every frame, unless the projection is
    already current."""
    from workers.pipeline.arrays import is_current
    from workers.pipeline.reduce import StreamingPCA

    collection = job.collection
    sources = _mappable_sources(job)
    if not sources:
        raise RuntimeError("no file has complete features to place on the map")
    precision = _feature_precision(job)
    n_frames = sum(s.frame_count for s in sources)
    models = collection.models_dir
    models.mkdir(parents=True, exist_ok=True)
    pca_state = read_manifest(models, "pca")
    if (job.kind == Job.Kind.TRAIN or pca_state is None or pca_state["weights"] != _weights_identity()
            or pca_state.get("precision") != precision):
        jobflow.update(job.pk, message=f"fitting PCA on {n_frames} frame(s)")
        batches = (chunk for source in sources for chunk in _source_features(source, precision))
        pca = StreamingPCA(n_components=settings.PCA_COMPONENTS).fit(
            batches, n_frames, progress=Throttle(lambda f: jobflow.update(job.pk, progress=0.5 * f)))
        pca.save(models / "pca.npz")
        pca_state = {"version": uuid.uuid4().hex, "explained_variance": pca.explained_variance_,
                     "components": pca.n_components, "fitted_components": pca.n_fitted_components_,
                     "frames": n_frames, "weights": _weights_identity(), "precision": precision}
        write_json_atomic(models / "pca.json", pca_state)
    # The projection's inputs: this PCA and exactly these sources' frames.
    made_from = {"stage": "pca", "pca": pca_state["version"],
                 "sources": _digest([[s.pk, s.frame_count] for s in sources])}
    out_dir = collection.embedding_dir
    if not (is_current(out_dir, "pca", made_from) and is_current(out_dir, "index", made_from)):
        pca = StreamingPCA.load(models / "pca.npz")
        jobflow.update(job.pk, progress=0.5, message=f"projecting {n_frames} frame(s) to {pca.n_components} dims")
        with ArrayWriter(out_dir, "pca", (pca.n_components,), "float32", made_from) as projected, \
                ArrayWriter(out_dir, "index", (), INDEX_DTYPE, made_from) as index:
            for done, source in enumerate(sources, 1):
                for chunk in _source_features(source, precision):
                    projected.append(pca.transform(chunk))
                frames = open_array(source.frames_dir, "index")
                rows = [(source.pk, frame, when) for frame, when in zip(frames["frame"], frames["time"])]
                index.append(np.array(rows, dtype=INDEX_DTYPE))
                jobflow.update(job.pk, progress=0.5 + 0.5 * done / len(sources))
    _begin_next(job.pk, "pca")


def _train(job):
    """Train the autoencoder and the layout stretch on the collection's PCA vectors."""
    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch

    collection = job.collection
    vectors = open_array(collection.embedding_dir, "pca")
    models = collection.models_dir
    jobflow.update(job.pk, message=f"training the autoencoder on {len(vectors)} frame(s)")
    autoencoder = TripletAutoencoder(input_dim=vectors.shape[1], epochs=settings.AUTOENCODER_EPOCHS, seed=0)
    autoencoder.fit(vectors, progress=Throttle(lambda f: jobflow.update(job.pk, progress=0.95 * f), 2.0))
    stretch = RadialStretch(rotation_degrees=settings.LAYOUT_ROTATION).fit(autoencoder.transform(vectors))
    version = uuid.uuid4().hex
    autoencoder.save(models / "autoencoder")
    write_json_atomic(models / "layout.json", {
        "version": version, "pca": read_manifest(models, "pca")["version"], "trained_at": timezone.now().isoformat(),
        "frames": len(vectors), "stretch": stretch.to_dict(),
        "history": {k: [float(v) for v in values] for k, values in autoencoder.history_.items()},
    })
    _begin_next(job.pk, "train")


def _layout(job):
    """Place every frame: encoder, then the stretch; publish the arrays and the state."""
    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch

    from workers.pipeline.arrays import is_current
    from workers.pipeline.mapstore import map_version, publish_map, remove_old_maps

    collection = job.collection
    models, out_dir = collection.models_dir, collection.embedding_dir
    model = read_manifest(models, "layout")
    pca_state = read_manifest(models, "pca")
    if not jobflow.model_matches_pca(collection):
        raise RuntimeError("the autoencoder was trained on another PCA than the current one "
                           "(a retraining did not finish): run `manage.py train` on this collection")
    vectors = open_array(out_dir, "pca")
    made_from = {"stage": "layout", "model": model["version"], "vectors": _digest(read_manifest(out_dir, "pca"))}
    if not (is_current(out_dir, "codes", made_from) and is_current(out_dir, "layout", made_from)):
        jobflow.update(job.pk, message=f"placing {len(vectors)} frame(s) on the map")
        autoencoder = TripletAutoencoder.load(models / "autoencoder")
        stretch = RadialStretch.from_dict(model["stretch"])
        codes = autoencoder.transform(vectors)
        for name, values in (("codes", codes), ("layout", stretch.transform(codes))):
            with ArrayWriter(out_dir, name, (2,), "float32", made_from) as out:
                out.append(values)
    # Publish the map as a new immutable version; the web switches to it when
    # `embedding["map"]` changes, and keeps the one before for requests in flight.
    map_settings = {"clip_seconds": settings.CLIP_SECONDS, "dissimilar": settings.DISSIMILAR_CLIPS}
    version = map_version(read_manifest(out_dir, "layout")["produced_by"], **map_settings)
    jobflow.update(job.pk, message=f"indexing the map of {len(vectors)} frame(s)")
    publish_map(out_dir, collection.maps_dir, version, **map_settings,
                progress=Throttle(lambda f: jobflow.update(job.pk, progress=f), 2.0))
    previous = collection.embedding.get("map")
    collection.embedding = {
        "model": model["version"], "pca": pca_state["version"], "frames": len(vectors),
        "explained_variance": pca_state["explained_variance"], "weights": pca_state["weights"],
        "random_weights": pca_state["weights"] == "random", "trained_at": model["trained_at"],
        "placed_at": timezone.now().isoformat(), "map": version,
    }
    collection.save(update_fields=["embedding"])
    remove_old_maps(collection.maps_dir, keep={version, previous})
    _begin_next(job.pk, "layout")


# --- posters ---------------------------------------------------------------------------

def _poster(job):
    """Render the job's poster from the map version it was asked of: frames assigned to
    cells, read from the frame store (preview) or the source files at their exact
    timestamps (print). A source that is gone leaves its cells blank, with a warning."""
    from workers.pipeline.mapstore import MapSnapshot
    from workers.pipeline.posters import PosterSpec, assign_frames, render_poster

    collection, poster = job.collection, job.posters.get()
    spec = PosterSpec.from_dict(poster.params)
    warnings = []
    if not (collection.maps_dir / poster.map_version / "map.json").exists():
        current = collection.embedding.get("map")
        warnings.append({"path": "", "reason": f"map {poster.map_version} was replaced since; "
                                               f"made from the current map {current}"})
        poster.map_version = current
        poster.save(update_fields=["map_version"])
    snapshot = MapSnapshot(collection.maps_dir / poster.map_version, collection.sources_dir)
    jobflow.update(job.pk, message=f"assigning frames to {spec.columns}x{spec.rows} cells")
    assignment = assign_frames(spec, snapshot.layout)
    fetch = _frame_store_pixels(snapshot, warnings) if spec.quality == "preview" else \
        _source_pixels(snapshot, warnings)
    jobflow.update(job.pk, message=f"rendering {spec.pixel_size[0]}x{spec.pixel_size[1]} pixels ({spec.quality})")
    poster.file_path.parent.mkdir(parents=True, exist_ok=True)
    width, height, filled = render_poster(spec, assignment, fetch, poster.file_path,
                                          collection.data_dir / "posters" / "work", name=f"poster-{poster.pk}",
                                          progress=Throttle(lambda f: jobflow.update(job.pk, progress=f), 1.0))
    Poster.objects.filter(pk=poster.pk).update(width=width, height=height, cells=filled,
                                               file_size=poster.file_path.stat().st_size)
    if warnings:
        Job.objects.filter(pk=job.pk).update(skipped=job.skipped + warnings)
    _begin_next(job.pk, "poster")


def _source_name(source_id, paths):
    return paths.get(source_id) or f"source {source_id} (removed from the collection)"


def _frame_store_pixels(snapshot, warnings):
    def fetch(cells):
        gone = {}
        for cell, row in cells:
            pixels = snapshot.frame_pixels(row)
            if pixels is None:
                source = int(snapshot.index["source"][row])
                gone[source] = gone.get(source, 0) + 1
            yield cell, pixels
        paths = dict(Source.objects.filter(pk__in=gone).values_list("pk", "path"))
        warnings.extend({"path": _source_name(source, paths),
                         "reason": f"its frames are gone from the frame store: {count} cell(s) left blank"}
                        for source, count in gone.items())
    return fetch


def _source_pixels(snapshot, warnings):
    """Cells grouped by source, each source read once in time order."""
    from workers.pipeline.sampling import full_resolution_frames

    def fetch(cells):
        by_source = {}
        for cell, row in cells:
            source, time = int(snapshot.index["source"][row]), float(snapshot.index["time"][row])
            by_source.setdefault(source, {}).setdefault(time, []).append(cell)
        paths = dict(Source.objects.filter(pk__in=by_source).values_list("pk", "path"))
        for source, cells_at in by_source.items():
            done = set()
            try:
                for time, pixels in full_resolution_frames(_source_name(source, paths), list(cells_at),
                                                            settings.MAX_IMAGE_PIXELS):
                    for cell in cells_at[time]:
                        done.add(cell)
                        yield cell, pixels
            except MediaError as exc:
                left = [cell for cells in cells_at.values() for cell in cells if cell not in done]
                warnings.append({"path": _source_name(source, paths),
                                 "reason": f"{exc}: {len(left)} cell(s) left blank"})
                for cell in left:
                    yield cell, None
    return fetch


STAGES = {"scan": _scan, "sample": SAMPLING.enqueue_unfinished, "features": _begin_features, "pca": _pca,
          "train": _train, "layout": _layout, "poster": _poster}
