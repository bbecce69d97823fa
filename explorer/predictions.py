"""Reading the predictions of the collection's tagger (made by workers/stages/tagging.py):
one row of probabilities per row of a map, one column per label of the tagger."""
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
