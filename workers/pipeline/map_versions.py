"""Map versions: each an immutable snapshot of a layout with the indexes that serve it.

`publish_map` (run by the layout stage) makes `maps/<version>/` from the collection's
current arrays: hard links to `index`, `pca` and `layout` (the stages replace those files
by renaming, so a link keeps the snapshot's own copy at no cost), the tile cells of every
grid level, the neighbour index and the most dissimilar clips, then `map.json`, last.
The folder is built under a temporary name and renamed, so a map is either whole or
absent. A retraining builds a new version while the web goes on serving the old one,
and tiles are cached inside their map's folder (tiles-<revision>/), so a new layout never shows stale tiles.

`MapSnapshot` reads one such folder for the web: tiles, hit-testing, paths, similar clips.
"""
import functools
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from workers.pipeline.arrays import ArrayWriter, open_array, write_json_atomic
from workers.pipeline.clips import (Spans, clip_around, clip_windows, most_dissimilar_clips, similar_clips,
                                    typical_distance)
from workers.pipeline.neighbours import NeighbourIndex
from workers.pipeline.tiles import LAYOUT_REVISION, CellIndex, TileGrid, grid_levels_for, render_tile

MAP_FORMAT = 1
SNAPSHOT_ARRAYS = ("index", "pca", "layout")


def map_version(layout_produced_by, **settings):
    """A map's name: the layout it shows and the settings its indexes were built with."""
    payload = json.dumps({"format": MAP_FORMAT, "layout": layout_produced_by, **settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def publish_map(embedding_dir, maps_dir, version, clip_seconds=6.0, dissimilar=8, progress=None):
    """Build `maps_dir/version` from the arrays in `embedding_dir`, unless it exists."""
    maps_dir = Path(maps_dir)
    final = maps_dir / version
    if (final / "map.json").exists():
        return final
    report = progress or (lambda fraction: None)
    building = maps_dir / f".{version}.{uuid.uuid4().hex}.tmp"
    building.mkdir(parents=True)
    try:
        for name in SNAPSHOT_ARRAYS:
            _link(Path(embedding_dir) / f"{name}.bin", building / f"{name}.bin")
            shutil.copyfile(Path(embedding_dir) / f"{name}.json", building / f"{name}.json")
        index, vectors = open_array(building, "index"), open_array(building, "pca")
        layout = np.asarray(open_array(building, "layout"))
        if not len(index) == len(vectors) == len(layout):
            raise ValueError(f"index, pca and layout disagree on the number of frames "
                             f"({len(index)}, {len(vectors)}, {len(layout)})")
        Spans.from_sources(index["source"])  # refuses rows of a source that are not contiguous

        grid = TileGrid(grid_levels_for(len(layout)))
        cells = CellIndex.build(grid, layout)
        for name, values in (("cell_keys", cells.keys), ("cell_rows", cells.rows)):
            with ArrayWriter(building, name, (), values.dtype, {"stage": "map", "version": version}) as out:
                out.append(values)
        report(0.2)
        NeighbourIndex().fit(vectors, progress=lambda f: report(0.2 + 0.6 * f)).save(building / "neighbours.faiss")
        windows = clip_windows(index["source"], index["time"], clip_seconds)
        picked = most_dissimilar_clips(windows, vectors, dissimilar)
        write_json_atomic(building / "map.json", {
            "format": MAP_FORMAT, "version": version, "frames": len(layout),
            "grid_levels": grid.levels, "max_zoom": grid.max_zoom, "cell_offsets": cells.offsets,
            "clip_seconds": clip_seconds, "typical_distance": typical_distance(vectors),
            "dissimilar": [[int(a), int(b)] for a, b in windows[picked]],
        })
        report(1.0)
        os.rename(building, final)
    except OSError:
        if (final / "map.json").exists():  # another task published the same version first
            shutil.rmtree(building, ignore_errors=True)
            return final
        shutil.rmtree(building, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final


def save_cells_without(snapshot, hidden, directory, produced_by):
    """The cells of `snapshot`'s map with the rows `hidden` (a boolean per row) left out,
    written to `directory` (cell_keys, cell_rows); returns their offsets for
    `MapSnapshot.cells_from`. Copies hidden on the map are drawn with these."""
    cells = CellIndex.build(snapshot.grid, np.asarray(snapshot.layout), shown=np.flatnonzero(~np.asarray(hidden)))
    for name, values in (("cell_keys", cells.keys), ("cell_rows", cells.rows)):
        with ArrayWriter(directory, name, (), values.dtype, produced_by) as out:
            out.append(values)
    return cells.offsets


def remove_old_maps(maps_dir, keep):
    """Delete map folders (and leftovers of killed publishers) other than those in `keep`."""
    maps_dir = Path(maps_dir)
    if not maps_dir.exists():
        return
    for folder in maps_dir.iterdir():
        if folder.name not in keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _link(source, target):
    try:
        os.link(source, target)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(source, target)


class MapSnapshot:
    """One published map, read-only. `sources_dir` holds each source's frame store."""

    def __init__(self, directory, sources_dir):
        self.directory, self.sources_dir = Path(directory), Path(sources_dir)
        with open(self.directory / "map.json", encoding="utf-8") as handle:
            self.meta = json.load(handle)
        self.version = self.meta["version"]
        self.grid = TileGrid(self.meta["grid_levels"])
        self.index = open_array(self.directory, "index")
        self.layout = open_array(self.directory, "layout")
        self.vectors = open_array(self.directory, "pca")
        self.cells = CellIndex(self.grid, open_array(self.directory, "cell_keys"),
                               open_array(self.directory, "cell_rows"), self.meta["cell_offsets"], self.layout)
        self.spans = Spans.from_sources(self.index["source"])
        self.clip_seconds = self.meta["clip_seconds"]

    def __len__(self):
        return self.meta["frames"]

    @functools.cached_property
    def extent(self):
        """[x min, y min, x max, y max] of the frames' places: where the map's content is."""
        if len(self) == 0:
            return [-1.0, -1.0, 1.0, 1.0]
        layout = np.asarray(self.layout)
        return [float(v) for v in (*layout.min(axis=0), *layout.max(axis=0))]

    @functools.cached_property
    def neighbours(self):
        return NeighbourIndex.load(self.directory / "neighbours.faiss")

    # --- tiles ---

    def cells_from(self, directory, offsets):
        """Other cells of this map (save_cells_without): some frames left out."""
        return CellIndex(self.grid, open_array(directory, "cell_keys"), open_array(directory, "cell_rows"), offsets,
                         self.layout)

    def tile_path(self, zoom, column, row, scale=1, variant=""):
        # Cached by placement rule (tiles.LAYOUT_REVISION): an older rule's tiles are never served.
        # A variant (other cells: copies hidden) has tiles of its own.
        suffix = "@2x" if scale == 2 else ""
        folder = f"tiles-{LAYOUT_REVISION}" + (f"-{variant}" if variant else "")
        return self.directory / folder / str(zoom) / str(column) / f"{row}{suffix}.jpg"

    def tile(self, zoom, column, row, scale=1, cells=None, variant=""):
        """Path of the JPEG of a tile (`scale` 2: twice the pixels, for high-DPI screens),
        rendered and cached on first use; from other `cells` (cells_from), cached as `variant`.
        The caller checks `grid.has_tile` first."""
        path = self.tile_path(zoom, column, row, scale, variant)
        if not path.exists():
            data = render_tile(cells or self.cells, zoom, column, row, self.frame_pixels, scale=scale)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            partial.write_bytes(data)
            os.replace(partial, path)
        return path

    def frame_pixels(self, row):
        """RGB pixels of the frame at map row `row`, from its source's frame store; None
        when the store is gone (the source was removed since this map was made)."""
        source = int(self.index["source"][row])
        frames = self._frame_store(source)
        position = row - self.spans.rows(source)[0]  # a map holds all of a source's frames, in order
        if frames is None or position >= len(frames):
            return None
        return frames[position]

    @functools.lru_cache(maxsize=1024)
    def _frame_store(self, source):
        try:
            return open_array(self.sources_dir / str(source), "frames")
        except FileNotFoundError:
            return None

    # --- frames, paths and clips ---

    def row_of(self, source, frame):
        """Map row of frame number `frame` of `source`, or None when it is not on this map."""
        span = self.spans.rows(source)
        if span is None:
            return None
        frames = self.index["frame"][span[0]:span[1]]
        position = int(np.searchsorted(frames, frame))
        if position < len(frames) and frames[position] == frame:
            return span[0] + position
        return None

    def rows_of(self, source, frames):
        """Map rows of frame numbers `frames` of `source` (an array), -1 where one is not on this map."""
        frames = np.asarray(frames, dtype=np.int64)
        span = self.spans.rows(source)
        if span is None:
            return np.full(len(frames), -1, dtype=np.int64)
        known = np.asarray(self.index["frame"][span[0]:span[1]])
        position = np.minimum(np.searchsorted(known, frames), len(known) - 1)
        return np.where(known[position] == frames, span[0] + position, -1)

    def describe(self, row):
        """A frame of the map: its source, frame number in the video, position in the
        source's frame store, time in seconds and place on the map."""
        entry, (x, y) = self.index[row], self.layout[row]
        source = int(entry["source"])
        return {"row": int(row), "source": source, "frame": int(entry["frame"]),
                "position": int(row) - self.spans.rows(source)[0], "time": float(entry["time"]),
                "x": float(x), "y": float(y)}

    def path(self, source):
        """The source's frames on the map in time order: rows, times, x and y."""
        span = self.spans.rows(source)
        if span is None:
            return None
        start, stop = span
        return {"rows": np.arange(start, stop), "frames": np.asarray(self.index["frame"][start:stop]),
                "times": np.asarray(self.index["time"][start:stop]), "xy": np.asarray(self.layout[start:stop])}

    def clip_at(self, row, seconds=None):
        """Rows [start, stop) of the clip around map row `row`."""
        source = int(self.index["source"][row])
        start, stop = self.spans.rows(source)
        return clip_around(self.index["time"], start, stop, float(self.index["time"][row]),
                           seconds or self.clip_seconds)

    def similar(self, row, seconds=None, top=10, other_sources_only=False):
        seconds = seconds or self.clip_seconds
        return similar_clips(self.clip_at(row, seconds), self.index["source"], self.index["time"], self.vectors,
                             self.spans, self.neighbours, self.meta["typical_distance"], seconds, top=top,
                             other_sources_only=other_sources_only)

    def dissimilar(self):
        """The clips chosen at publication to be as different from each other as possible."""
        return [list(range(start, stop)) for start, stop in self.meta["dissimilar"]]
