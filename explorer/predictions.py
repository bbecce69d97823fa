"""Reading the predictions of the collection's tagger (made by workers/stages/tagging.py):
one row of probabilities per row of a map, one column per label of the tagger; what each
frame is predicted as, how sure the tagger is, and which frames need a person's review.

A label in an answer is {"id", "name", "probability"} (`label_scores`): `id` is the
collection's Label row of that name, as a string. A tagger remembers its labels by name, so
a label deleted since its training has a null id (its name is still what the tagger learned).
"""
import functools
import os

import numpy as np

from explorer.models import Label
from workers.pipeline.arrays import open_array
from workers.pipeline.tagger import top

NO_LABEL = -1  # in `given`: a frame nobody labelled
UNKNOWN_LABEL = -2  # in `given`: a label the tagger was not trained on (given since)


def collection_precision(collection):
    """The precision of the collection's features (its PCA was fitted on features in it), or
    None before it has any: what a tagger's inputs must be made in."""
    from workers.pipeline.arrays import read_manifest

    state = read_manifest(collection.models_dir, "pca")
    return state.get("precision") if state else None


def current_predictions(collection, map_version=None):
    """(tagger, probabilities (frames, labels)) of the collection's tagger for a map version
    (the current map by default); (tagger or None, None) while there are none for it: no
    tagger yet, or its predictions for a new map are being made."""
    tagger = collection.tagger
    version = map_version or collection.embedding.get("map")
    if tagger is None or not version:
        return tagger, None
    try:
        return tagger, open_array(tagger.predictions_dir(version), "probabilities")
    except FileNotFoundError:
        return tagger, None


def label_ids(tagger):
    """{each of the tagger's label names: the id (a string) of the collection's label of that
    name, or None when there is none any more}."""
    found = dict(Label.objects.filter(collection_id=tagger.collection_id, name__in=tagger.classes)
                 .values_list("name", "pk"))
    return {name: str(found[name]) if name in found else None for name in tagger.classes}


def label_scores(tagger, probabilities_row, count=3, ids=None):
    """The `count` most probable labels of one frame, most probable first:
    [{"id": the Label's id as a string or None (see the module's docstring), "name",
    "probability": rounded to 4 decimals}]. `ids` (label_ids(tagger)) saves a query a call."""
    ids = label_ids(tagger) if ids is None else ids
    return [{"id": ids.get(name), "name": name, "probability": round(probability, 4)}
            for _, name, probability in top(np.asarray(probabilities_row), tagger.classes, count)]


@functools.lru_cache(maxsize=8)
def _predicted(directory, written):
    probabilities = open_array(directory, "probabilities")
    predicted = np.empty(len(probabilities), np.int32)
    best = np.empty(len(probabilities), np.float32)
    for start in range(0, len(probabilities), 65536):  # a block at a time: the array may be large
        block = np.asarray(probabilities[start:start + 65536])
        predicted[start:start + len(block)] = block.argmax(axis=1)
        best[start:start + len(block)] = block.max(axis=1)
    return predicted, best


def predicted_labels(tagger, map_version):
    """(the class index each frame of a map is predicted as, its probability), read once
    per process (predictions never change once written); FileNotFoundError when there are none."""
    directory = tagger.predictions_dir(map_version)
    written = os.stat(directory / "probabilities.json").st_mtime_ns
    return _predicted(str(directory), written)


class FramePredictions:
    """The predictions of every frame of a map beside the labels people gave them.

    `given`: per map row, the class index of its label, NO_LABEL or UNKNOWN_LABEL.
    `confidence`: the probability of the given label for a labelled frame (0 for a label
    the tagger does not know), of the predicted one otherwise. `disagrees`: labelled, and
    predicted as another label."""

    def __init__(self, tagger, probabilities, predicted, best, row_labels, label_names):
        self.tagger, self.probabilities = tagger, probabilities
        self.predicted, self.best = predicted, best
        class_of = {name: index for index, name in enumerate(tagger.classes)}
        lookup = {pk: class_of.get(name, UNKNOWN_LABEL) for pk, name in label_names.items()}
        self.given = np.full(len(predicted), NO_LABEL, np.int64)
        labelled = np.flatnonzero(row_labels > 0)
        self.given[labelled] = [lookup.get(int(pk), UNKNOWN_LABEL) for pk in row_labels[labelled]]
        self.given_names = {int(row): label_names.get(int(row_labels[row])) for row in labelled}
        self.confidence = best.astype(np.float64)
        self.confidence[labelled] = 0.0
        known = labelled[self.given[labelled] >= 0]
        if len(known):
            order = np.argsort(known)  # memmap reads in row order
            values = np.asarray(probabilities[known[order]])[np.arange(len(known)), self.given[known[order]]]
            self.confidence[known[order]] = values
        self.disagrees = (self.given != NO_LABEL) & (self.given != predicted)

    def rows(self, label=None, review=False, below=0.6):
        """Map rows, in the order asked:
        - `review`: the frames a person should look at, least confident first: those whose
          prediction disagrees with their label, and the unlabelled ones whose top
          probability is below `below`. (A labelled frame the tagger agrees with is settled:
          a person said so, however unsure the tagger is.) With `label` (a class index),
          those predicted as it or labelled as it.
        - otherwise with `label`: the frames predicted as it, most probable first;
        - otherwise every frame, in map order.
        Ties keep map order."""
        if review:
            wanted = self.disagrees | ((self.given == NO_LABEL) & (self.best < below))
            if label is not None:
                wanted &= (self.predicted == label) | (self.given == label)
            rows = np.flatnonzero(wanted)
            return rows[np.argsort(self.confidence[rows], kind="stable")]
        if label is not None:
            rows = np.flatnonzero(self.predicted == label)
            return rows[np.argsort(-self.best[rows], kind="stable")]
        return np.arange(len(self.predicted))

    def item(self, row, ids):
        """One frame's prediction, as the API gives it (the frame itself aside)."""
        return {"predicted": self.tagger.classes[int(self.predicted[row])],
                "probability": round(float(self.best[row]), 4),
                "confidence": round(float(self.confidence[row]), 4),
                "top": label_scores(self.tagger, self.probabilities[row], 3, ids),
                "label": self.given_names.get(int(row)), "disagrees": bool(self.disagrees[row])}

    def counts(self):
        """Frames predicted as each label, in the order of the tagger's classes."""
        return np.bincount(self.predicted, minlength=len(self.tagger.classes)).tolist()


def source_means(probabilities, spans):
    """Per source of the map (spans: workers/pipeline/clips.py Spans, sources sorted), the mean
    of its frames' probabilities: (sources, len(classes)) float64."""
    means = np.zeros((len(spans.sources), probabilities.shape[1]))
    for position in np.argsort(spans.starts):  # in row order: the memmap is read once, forwards
        start, count = int(spans.starts[position]), int(spans.counts[position])
        means[position] = np.asarray(probabilities[start:start + count], dtype=np.float64).mean(axis=0)
    return means


def head_of(tagger):
    """The tagger's head (workers/pipeline/tagger.py), loaded once per process."""
    return _head(str(tagger.head_path))


@functools.lru_cache(maxsize=8)
def _head(path):
    from workers.pipeline.tagger import Head

    return Head.load(path)
