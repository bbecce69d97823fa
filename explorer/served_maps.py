"""The maps the web serves: a collection's current map version (or a still-kept one named
in a tile's URL), each opened once per process (workers/pipeline/map_versions.py writes
and reads them). A new version appears when a layout stage finishes; until then the old
one is served, so a retraining never interrupts the map."""
import functools
import re

from explorer.models import Job
from workers.pipeline.map_versions import MapSnapshot

VERSION = re.compile(r"^[0-9a-f]{16}$")


@functools.lru_cache(maxsize=16)
def _open(directory, sources_dir):
    return MapSnapshot(directory, sources_dir)


def snapshot(collection, version=None):
    """The collection's current map, or the given (still kept) version; None if there is none."""
    version = version or collection.embedding.get("map")
    if not version or not VERSION.match(version):
        return None
    directory = collection.maps_dir / version
    if not (directory / "map.json").exists():
        return None
    return _open(str(directory), str(collection.sources_dir))


def require_snapshot(collection):
    """The current map, or a 409 (the collection is there, its map not yet) that says what
    is being done about it."""
    from explorer.api_errors import Conflict

    current = snapshot(collection)
    if current is None:
        raise Conflict(no_map_reason(collection))
    return current


def no_map_reason(collection):
    job = collection.jobs.exclude(status__in=Job.FINISHED).first()
    if job:
        return (f"collection {collection.pk} has no map yet: job {job.pk} is at stage {job.stage} "
                f"({job.progress:.0%}{', ' + job.message if job.message else ''})")
    return f"collection {collection.pk} has no map yet: ingest media into it"
