"""The stages on the map: `pca` fits PCA on the collection's features (when needed) and
projects every frame; `train` trains the autoencoder and the layout stretch; `layout` places
every frame and publishes the map as a new immutable version."""
import hashlib
import json
import uuid

import numpy as np
from django.conf import settings
from django.utils import timezone

from explorer.models import Job, WorkItem
from workers import lifecycle
from workers.pieces import job_progress
from workers.pipeline.arrays import ArrayWriter, is_current, open_array, read_manifest, write_json_atomic
from workers.stages import Report
from workers.stages.describe import embedded_sources, feature_precision, source_features, weights_identity

INDEX_DTYPE = [("source", "<i8"), ("frame", "<i8"), ("time", "<f8")]


def needs_training(job):
    """A train job always trains; an ingest only when the collection's model does not match
    its PCA (none yet, or a refit PCA)."""
    return job.kind == Job.Kind.TRAIN or not model_matches_pca(job.collection)


def model_matches_pca(collection):
    """True when a trained model exists and was trained on the current PCA (a refit PCA,
    or a retraining that did not finish, leaves them apart: then it must train again)."""
    model = read_manifest(collection.models_dir, "layout")
    pca = read_manifest(collection.models_dir, "pca")
    return bool(model and pca and model["pca"] == pca["version"])


def mappable_sources(job):
    """The sources whose features are complete, in map order. The others are listed on
    the job with the error of their failed chunk, and left off the map."""
    mappable, left_off, precision = [], [], feature_precision(job)
    for source in embedded_sources(job.collection):
        if source_features(source, precision) is not None:
            mappable.append(source)
            continue
        failed = WorkItem.objects.filter(source=source, status=WorkItem.Status.FAILED).exclude(error="")
        reason = failed.values_list("error", flat=True).last() or "its features are missing"
        left_off.append({"path": source.path, "reason": f"left off the map: {reason}",
                         "kind": Job.Skip.LEFT_OFF_MAP})
    lifecycle.add_skipped(job, left_off)
    return mappable


def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def fit_pca(job):
    """Fit PCA when needed (a train job, none yet, or other Xception weights or feature
    precision than it was fitted on); project every frame, unless the projection is
    already current."""
    from workers.pipeline.reduce import BLOCK_ROWS, StreamingPCA, blocks_of

    collection = job.collection
    sources = mappable_sources(job)
    if not sources:
        raise RuntimeError("no file has complete features to place on the map")
    precision = feature_precision(job)
    n_frames = sum(s.frame_count for s in sources)
    models = collection.models_dir
    models.mkdir(parents=True, exist_ok=True)
    pca_state = read_manifest(models, "pca")
    if (job.kind == Job.Kind.TRAIN or pca_state is None or pca_state["weights"] != weights_identity()
            or pca_state.get("precision") != precision):
        lifecycle.update(job.pk, message=f"fitting PCA on {n_frames} frame(s)")
        batches = (chunk for source in sources for chunk in source_features(source, precision))
        pca = StreamingPCA(n_components=settings.PCA_COMPONENTS).fit(
            batches, n_frames, progress=job_progress(job.pk, span=0.5))
        pca.save(models / "pca.npz")
        pca_state = {"version": uuid.uuid4().hex, "explained_variance": pca.explained_variance_,
                     "components": pca.n_components, "fitted_components": pca.n_fitted_components_,
                     "frames": n_frames, "weights": weights_identity(), "precision": precision}
        write_json_atomic(models / "pca.json", pca_state)
    # The projection's inputs: this PCA and exactly these sources' frames.
    made_from = {"stage": "pca", "pca": pca_state["version"],
                 "sources": _digest([[s.pk, s.frame_count] for s in sources])}
    out_dir = collection.embedding_dir
    if not (is_current(out_dir, "pca", made_from) and is_current(out_dir, "index", made_from)):
        pca = StreamingPCA.load(models / "pca.npz")
        lifecycle.update(job.pk, progress=0.5, message=f"projecting {n_frames} frame(s) to {pca.n_components} dims")
        with ArrayWriter(out_dir, "pca", (pca.n_components,), "float32", made_from) as projected, \
                ArrayWriter(out_dir, "index", (), INDEX_DTYPE, made_from) as index:
            report = job_progress(job.pk, start=0.5, span=0.5)
            chunks = (chunk for source in sources for chunk in source_features(source, precision))
            done = 0
            for block in blocks_of(chunks, BLOCK_ROWS):  # many photos' single rows projected at once
                # Always BLOCK_ROWS rows to a product, the last block padded: the BLAS kernel, chosen by
                # the shape, then sums each row as it did before new frames were added after it, so the
                # old frames' vectors, and their places on the map, stay exactly the same.
                padded = np.pad(np.asarray(block, dtype=np.float32), ((0, BLOCK_ROWS - len(block)), (0, 0)))
                projected.append(pca.transform(padded)[:len(block)])
                done += len(block)
                report(0.8 * done / n_frames)  # raises JobCancelled once the job is cancelled
            for number, source in enumerate(sources, 1):
                frames = open_array(source.frames_dir, "index")
                rows = [(source.pk, frame, when) for frame, when in zip(frames["frame"], frames["time"])]
                index.append(np.array(rows, dtype=INDEX_DTYPE))
                report(0.8 + 0.2 * number / len(sources))


def train(job):
    """Train the autoencoder and the layout stretch on the collection's PCA vectors."""
    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch

    collection = job.collection
    vectors = open_array(collection.embedding_dir, "pca")
    models = collection.models_dir
    lifecycle.update(job.pk, message=f"training the autoencoder on {len(vectors)} frame(s): their neighbour graph, "
                                     f"then up to {settings.AUTOENCODER_MAX_STEPS} steps")
    autoencoder = TripletAutoencoder(input_dim=vectors.shape[1], epochs=settings.AUTOENCODER_EPOCHS,
                                     max_steps=settings.AUTOENCODER_MAX_STEPS, seed=0)
    autoencoder.fit(vectors, progress=job_progress(job.pk, span=0.95, interval=2.0))
    stretch = RadialStretch(rotation_degrees=settings.LAYOUT_ROTATION).fit(autoencoder.transform(vectors))
    version = uuid.uuid4().hex
    autoencoder.save(models / "autoencoder")
    write_json_atomic(models / "layout.json", {
        "version": version, "pca": read_manifest(models, "pca")["version"], "trained_at": timezone.now().isoformat(),
        "frames": len(vectors), "stretch": stretch.to_dict(),
        "history": {k: [float(v) for v in values] for k, values in autoencoder.history_.items()},
    })


def place_frames(job):
    """Place every frame: encoder, then the stretch; publish the arrays and the state."""
    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch
    from workers.pipeline.map_versions import map_version, publish_map, remove_old_maps

    collection = job.collection
    models, out_dir = collection.models_dir, collection.embedding_dir
    model = read_manifest(models, "layout")
    pca_state = read_manifest(models, "pca")
    if not model_matches_pca(collection):
        raise RuntimeError("the autoencoder was trained on another PCA than the current one "
                           "(a retraining did not finish): run `manage.py train` on this collection")
    vectors = open_array(out_dir, "pca")
    made_from = {"stage": "layout", "model": model["version"], "vectors": _digest(read_manifest(out_dir, "pca"))}
    if not (is_current(out_dir, "codes", made_from) and is_current(out_dir, "layout", made_from)):
        lifecycle.update(job.pk, message=f"placing {len(vectors)} frame(s) on the map")
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
    lifecycle.update(job.pk, message=f"indexing the map of {len(vectors)} frame(s)")
    publish_map(out_dir, collection.maps_dir, version, **map_settings,
                progress=job_progress(job.pk, interval=2.0))
    previous = collection.embedding.get("map")
    collection.embedding = {
        "model": model["version"], "pca": pca_state["version"], "frames": len(vectors),
        "explained_variance": pca_state["explained_variance"], "weights": pca_state["weights"],
        "random_weights": pca_state["weights"] == "random", "trained_at": model["trained_at"],
        "placed_at": timezone.now().isoformat(), "map": version,
    }
    collection.save(update_fields=["embedding"])
    remove_old_maps(collection.maps_dir, keep={version, previous})


def report(job):
    embedding = job.collection.embedding
    parts = []
    if job.params.get("embed", True) and embedding.get("frames"):
        parts.append(f"map of {embedding['frames']} frame(s)")
    left_off = [skip for skip in job.skipped if skip.get("kind") == Job.Skip.LEFT_OFF_MAP]
    if left_off:
        parts.append(f"{len(left_off)} file(s) left off the map")
    return Report(tuple(parts))
