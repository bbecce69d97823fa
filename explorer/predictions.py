"""Reading the predictions of the collection's tagger (made by workers/stages/tagging.py):
one row of probabilities per row of a map, one column per label of the tagger."""
import functools

from workers.pipeline.arrays import open_array


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


def label_scores(tagger, probabilities, count):
    """The `count` most probable labels of one row of probabilities, most probable first, as
    the API answers them: {"id": the label's id as a string (null once the label is gone),
    "name", "probability" to 4 decimals}."""
    from explorer.models import Label
    from workers.pipeline.tagger import top

    ids = dict(Label.objects.filter(collection=tagger.collection_id, name__in=tagger.classes).values_list("name", "pk"))
    return [{"id": str(ids[name]) if name in ids else None, "name": name, "probability": round(probability, 4)}
            for _, name, probability in top(probabilities, tagger.classes, count)]


def head_of(tagger):
    """The tagger's head (workers/pipeline/tagger.py), loaded once per process."""
    return _head(str(tagger.head_path))


@functools.lru_cache(maxsize=8)
def _head(path):
    from workers.pipeline.tagger import Head

    return Head.load(path)
