"""The copies the web shows with a map: the collection's current detection (workers/stages/
duplicates.py) when it was made from that map version, its files opened once per process."""
import functools

from workers.pipeline.copy_groups import CopyFiles


@functools.lru_cache(maxsize=16)
def _files(directory):
    return CopyFiles(directory)


def detection_files(detection):
    """A Duplicates row's files, or None when they are gone."""
    if detection is None or not (detection.directory / "duplicates.json").exists():
        return None
    return _files(str(detection.directory))


def copies_for(collection, version):
    """The CopyFiles of the collection's detection if made from map `version`, else None."""
    detection = collection.duplicates
    if detection is None or detection.map_version != version:
        return None
    return detection_files(detection)


def original_of(found, row):
    """The map row of the most original frame that frame `row` copies, or None."""
    if found is None or found.copy_of[row] < 0:
        return None
    original = int(found.copy_of[row])
    for _ in range(64):  # a copy's copy points to a copy (chains are short)
        if found.copy_of[original] < 0:
            break
        original = int(found.copy_of[original])
    return original


def copy_of_json(found, current, row, original, original_frame):
    """What frame `row` copies: {"frame": `original_frame` (the frame_json of row `original`),
    "kind", "score"}."""
    relation = found.relation(int(current.index["source"][row]), int(current.index["source"][original]))
    return {"frame": original_frame, "kind": relation["kind"] if relation else "copy",
            "score": relation["score"] if relation else None}


@functools.lru_cache(maxsize=16)
def _cells(current, directory):
    files = _files(directory)
    return current.cells_from(files.directory, files.details["cell_offsets"])


def cells_without_copies(current, found):
    """The cells of map `current` with the copies of detection `found` left out."""
    return _cells(current, str(found.directory))
