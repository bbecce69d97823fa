"""Arrays on disk: raw little-endian data in `NAME.bin` beside a manifest `NAME.json`.

The manifest records the format version, shape, dtype and what produced the
array (stage and parameters), so a stage can tell whether its output is already
there for the same inputs. Data is written under a temporary name and renamed;
the manifest is written last, so a crash never leaves an array that looks finished.
"""
import json
import os
import uuid
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


def _dtype_to_json(dtype):
    dtype = np.dtype(dtype)
    return dtype.descr if dtype.fields else dtype.str


def _dtype_from_json(value):
    if isinstance(value, str):
        return np.dtype(value)
    return np.dtype([tuple(field) for field in value])


def write_json_atomic(path, payload):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_manifest(directory, name):
    """The manifest of array `name` in `directory`, or None when it is not (fully) written."""
    try:
        with open(Path(directory) / f"{name}.json", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def open_array(directory, name, mode="r"):
    """Memory-map a finished array; raises FileNotFoundError if it has no manifest."""
    manifest = read_manifest(directory, name)
    if manifest is None:
        raise FileNotFoundError(f"no finished array {name!r} in {directory}")
    shape = tuple(manifest["shape"])
    dtype = _dtype_from_json(manifest["dtype"])
    if shape[0] == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(Path(directory) / f"{name}.bin", dtype=dtype, mode=mode, shape=shape)


class ArrayWriter:
    """Streams rows of a fixed shape into a new array; nothing is visible until commit().

    >>> with ArrayWriter(folder, "frames", (300, 534, 3), np.uint8, produced_by={...}) as out:
    ...     out.append(batch)          # any number of rows at a time
    """

    def __init__(self, directory, name, row_shape, dtype, produced_by):
        self.directory = Path(directory)
        self.name = name
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.produced_by = produced_by
        self.rows = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        # Unique per attempt: a redelivered task running beside a slow first attempt
        # never writes into the same file.
        self._tmp = self.directory / f".{name}.{uuid.uuid4().hex}.tmp"
        self._handle = open(self._tmp, "wb")

    def append(self, rows):
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self._handle.write(rows.tobytes())
        self.rows += rows.shape[0]

    def commit(self):
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        manifest_path = self.directory / f"{self.name}.json"
        # Remove an older manifest first: new data must never sit under an old manifest.
        manifest_path.unlink(missing_ok=True)
        os.replace(self._tmp, self.directory / f"{self.name}.bin")
        write_json_atomic(manifest_path, {
            "format_version": FORMAT_VERSION,
            "shape": [self.rows, *self.row_shape],
            "dtype": _dtype_to_json(self.dtype),
            "produced_by": self.produced_by,
        })

    def abort(self):
        if not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


class RowsOf:
    """Several arrays' rows read as one array's, by slices (what a batched reader asks for):
    the frames of many small chunks go through the network as one stream. A slice is an
    array where its rows have one shape, and a list of rows where they differ (frames of
    videos of other aspect ratios are stored at other sizes)."""

    def __init__(self, arrays):
        self.arrays = list(arrays)
        self.offsets = np.cumsum([0] + [len(array) for array in self.arrays])

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("RowsOf reads contiguous slices only")
        start, stop, _ = rows.indices(len(self))
        parts = [array[max(start - offset, 0):stop - offset] for array, offset in zip(self.arrays, self.offsets[:-1])
                 if offset < stop and start < offset + len(array)]
        if not parts:
            return np.asarray(self.arrays[0][0:0])
        if len({part.shape[1:] for part in parts}) > 1:
            return [row for part in parts for row in part]
        return np.concatenate(parts)

    def split(self, joined):
        """`joined`, rows made one for one from these rows, cut back into one part per array."""
        return [joined[start:stop] for start, stop in zip(self.offsets[:-1], self.offsets[1:])]


def remove_stale_temporaries(directory, older_than=600.0):
    """Delete temporary files that a killed writer left behind. A live writer keeps
    touching its file, so anything untouched for `older_than` seconds is garbage."""
    import time

    cutoff = time.time() - older_than
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:
            pass


def is_current(directory, name, produced_by):
    """True when array `name` is finished and was produced with exactly these inputs."""
    manifest = read_manifest(directory, name)
    return manifest is not None and manifest.get("produced_by") == produced_by
