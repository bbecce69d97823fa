"""The `tag` stage trains a tagger (a classifier head, workers/pipeline/tagger.py) on the
Xception features of the collection's labelled frames; the `predict` stage applies a tagger
to every frame of the current map: a tag job's new one (which then becomes the collection's),
or the collection's after every job that makes a new map.

A tagger is a Tagger row and its folder: `head.npz` (Tagger.head_path), and
`predictions/<map version>/probabilities` (one row per map row, one column per label of the
tagger; those of maps no longer kept are deleted).

Job params of a `tag` job: {"head": "softmax"|"dense", "fine_tune": bool (also fine-tune the
top blocks of Xception and report them beside the frozen head: workers/pipeline/fine_tune.py)}.
"""
import os
import uuid
from collections import defaultdict

import numpy as np
from django.db import transaction
from django.db.models import F, Max, Q

from explorer.models import Collection, FrameLabel, Job, Source, Tagger
from explorer.predictions import collection_precision
from workers import lifecycle
from workers.pieces import job_progress
from workers.pipeline.arrays import ArrayWriter, is_current, open_array, read_manifest
from workers.stages import Report
from workers.stages.describe import source_features, weights_identity

def labelled_features(collection, precision):
    """(features (n, 4096), label names (n,), source of each (n,), frames left out, and
    (source, position in its frame store) of each) of the labelled frames whose features are
    on disk, in (source, frame) order."""
    by_source = defaultdict(list)
    for source, frame, name in FrameLabel.objects.filter(collection=collection).order_by(
            "source", "frame").values_list("source", "frame", "label__name"):
        by_source[source].append((frame, name))
    features, names, videos, missing, places = [], [], [], 0, []
    for source in Source.objects.filter(pk__in=by_source, status=Source.Status.READY, frame_count__gt=0):
        chunks = source_features(source, precision)
        labelled = by_source.pop(source.pk)
        if chunks is None:
            missing += len(labelled)
            continue
        known = np.asarray(open_array(source.frames_dir, "index")["frame"])
        frames = np.array([frame for frame, _ in labelled])
        positions = np.minimum(np.searchsorted(known, frames), len(known) - 1)
        found = known[positions] == frames
        missing += int((~found).sum())
        offsets = np.cumsum([0] + [len(chunk) for chunk in chunks])
        for position in positions[found]:
            chunk = int(np.searchsorted(offsets, position, side="right")) - 1
            features.append(np.asarray(chunks[chunk][position - offsets[chunk]], dtype=np.float32))
        names += [name for (_, name), keep in zip(labelled, found) if keep]
        videos += [source.pk] * int(found.sum())
        places += [(source, int(position)) for position in positions[found]]
    missing += sum(len(rest) for rest in by_source.values())
    width = features[0].shape[0] if features else 0
    return (np.array(features, dtype=np.float32).reshape(-1, width), np.array(names), np.array(videos), missing,
            places)


def train_tagger(job):
    from workers.pipeline.tagger import TaggerError, train

    collection = job.collection
    precision = collection_precision(collection)
    if precision is None:
        raise RuntimeError(f"collection {collection.name!r} has no features on a map yet: ingest media first")
    lifecycle.update(job.pk, progress=0.0, message="reading the features of the labelled frames")
    features, names, videos, missing, places = labelled_features(collection, precision)
    head_kind = job.params.get("head", "softmax")
    lifecycle.update(job.pk, progress=0.1, message=f"training a {head_kind} head on {len(names)} labelled frame(s)")
    try:
        head, report = train(features, names, videos, kind=head_kind, seed=0,
                             progress=job_progress(job.pk, start=0.1, span=0.8 if job.params.get("fine_tune") else 0.9))
    except TaggerError as error:
        raise RuntimeError(str(error)) from None
    report["left_out"] = missing
    if job.params.get("fine_tune"):
        report["fine_tuned"] = _fine_tune(job, features, names, videos, places, head_kind)
    with transaction.atomic():
        Collection.objects.filter(pk=collection.pk).update(name=F("name"))  # one new version at a time
        version = (collection.taggers.aggregate(last=Max("version"))["last"] or 0) + 1
        tagger = Tagger.objects.create(collection=collection, job=job, version=version, head=head_kind,
                                       classes=head.classes, report=report,
                                       features={"weights": weights_identity(), "precision": precision})
    try:
        tagger.directory.mkdir(parents=True, exist_ok=True)
        partial = tagger.directory / f".{uuid.uuid4().hex}.npz"
        head.save(partial)
        os.replace(partial, tagger.head_path)
        lifecycle.update(job.pk, progress=1.0)  # raises JobCancelled: a cancelled job leaves no tagger
    except BaseException:
        import shutil

        tagger.delete()
        shutil.rmtree(tagger.directory, ignore_errors=True)
        raise


def _fine_tune(job, features, names, videos, places, head_kind):
    """The fine-tuned top blocks' validation on the same held-out videos as the frozen head's
    (workers/pipeline/fine_tune.py), or why there is none."""
    from django.conf import settings

    from workers.pipeline.fine_tune import fine_tune
    from workers.pipeline.tagger import fit_head, split_by_video

    held = split_by_video(names, videos, seed=0)  # the split train() validated on
    if not held.any():
        return {"note": "no video could be held out to compare on: label frames of a second video of a label"}
    classes = sorted(set(names.tolist()))
    targets = np.searchsorted(classes, names)
    lifecycle.update(job.pk, progress=0.9, message="fine-tuning the top blocks of Xception on the labelled frames")
    start = fit_head(features[~held], targets[~held], classes, head_kind, seed=0)
    sources = {source.pk: source for source, _ in places}
    stores = {pk: open_array(source.frames_dir, "frames") for pk, source in sources.items()}
    frames = [stores[source.pk][position] for source, position in places]
    return {**fine_tune(frames, targets, held, start, settings.XCEPTION_WEIGHTS, seed=0,
                        progress=job_progress(job.pk, start=0.9, span=0.1)),
            "videos": int(len(np.unique(videos[held])))}


def train_report(job):
    tagger = Tagger.objects.filter(job=job).first()
    if tagger is None:
        return Report()
    validation = tagger.report.get("validation")
    if validation is None:
        checked = "not validated (every label's frames come from one video: label frames of a second video)"
    else:
        checked = (f"validation accuracy {validation['accuracy']:.3f} on {validation['frames']} frame(s) of "
                   f"{validation['videos']} held-out video(s)")
    tuned = tagger.report.get("fine_tuned")
    if tuned and "accuracy" in tuned:
        checked += f"; fine-tuned top blocks: {tuned['accuracy']:.3f} on the same frames"
    elif tuned:
        checked += f"; not fine-tuned: {tuned['note']}"
    return Report((f"tagger {tagger.version} ({tagger.head}, {len(tagger.classes)} labels, "
                   f"{tagger.report['frames']} labelled frame(s)): {checked}",))


# --- predictions ---

def wanted(job):
    return job.kind == Job.Kind.TAG or job.collection.tagger_id is not None


def _tagger_of(job, collection):
    """The tagger a job predicts with: a tag job's own new one, else the collection's."""
    return Tagger.objects.filter(job=job).first() if job.kind == Job.Kind.TAG else collection.tagger


def predict(job):
    """Tag every frame of the current map. A tag job's new tagger becomes the collection's
    once it has, so the map never shows a tagger without predictions, and only if no newer
    version became current meanwhile."""
    collection = Collection.objects.select_related("tagger").get(pk=job.collection_id)
    tagger, version = _tagger_of(job, collection), collection.embedding.get("map")
    if tagger is None or not version:
        return
    if tagger.features.get("weights") != weights_identity():
        lifecycle.add_skipped(job, [{"path": "", "kind": Job.Skip.WARNING, "reason": (
            f"tagger {tagger.version} learned from features of other Xception weights than XCEPTION_WEIGHTS now "
            "gives: the new map is not tagged; train the tagger again")}])
        return
    _write_predictions(job, collection, tagger, version)
    if job.kind == Job.Kind.TAG:
        with transaction.atomic():
            lifecycle.update(job.pk, progress=1.0)  # raises JobCancelled: a cancelled training changes nothing
            Collection.objects.filter(pk=collection.pk).filter(
                Q(tagger=None) | Q(tagger__version__lt=tagger.version)).update(tagger=tagger)
    _remove_unserved_predictions(collection)


def _write_predictions(job, collection, tagger, version):
    from workers.pipeline.map_versions import MapSnapshot
    from workers.pipeline.tagger import Head

    made_from = {"stage": "predict", "tagger": tagger.pk, "map": version}
    out = tagger.predictions_dir(version)
    if is_current(out, "probabilities", made_from):
        return
    snapshot = MapSnapshot(collection.maps_dir / version, collection.sources_dir)
    head = Head.load(tagger.head_path)
    precision = collection_precision(collection)
    spans = snapshot.spans
    sources = Source.objects.in_bulk([int(s) for s in spans.sources])
    report = job_progress(job.pk)
    lifecycle.update(job.pk, message=f"predicting {len(snapshot)} frame(s) with tagger {tagger.version}")
    with ArrayWriter(out, "probabilities", (len(head.classes),), "float32", made_from) as written:
        done = 0
        for position in np.argsort(spans.starts):  # sources in map row order
            source, rows = sources.get(int(spans.sources[position])), int(spans.counts[position])
            chunks = source_features(source, precision) if source else None
            if chunks is None or sum(len(chunk) for chunk in chunks) != rows:
                # Sampled again since the map was made: its rows would no longer line up.
                raise RuntimeError(f"the features of source {spans.sources[position]} are not those of the map any "
                                   "more: the next map will be tagged")
            for chunk in chunks:
                written.append(head.probabilities(chunk))
            done += rows
            report(done / max(len(snapshot), 1))


def _remove_unserved_predictions(collection):
    """Delete every tagger's predictions for map versions that are no longer kept."""
    import shutil

    for folder in (collection.data_dir / "taggers").glob("*/predictions/*"):
        if not (collection.maps_dir / folder.name).is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def predict_report(job):
    collection = Collection.objects.select_related("tagger").get(pk=job.collection_id)
    tagger, version = _tagger_of(job, collection), collection.embedding.get("map")
    if tagger is None or not version:
        return Report()
    manifest = read_manifest(tagger.predictions_dir(version), "probabilities")
    if manifest is None:
        return Report()
    return Report((f"{manifest['shape'][0]} frame(s) tagged by tagger {tagger.version}",))
