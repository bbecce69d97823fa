"""The map as image tiles: at each zoom level the plane is a grid of cells, and each cell
shows the frame nearest its centre (the article's grid tiling).

Geometry. The map is the square [-1, 1]^2 of the layout, drawn 16:9 like the frames, so
that every cell holds a whole thumbnail. At zoom 0 it is one tile of 256x144 pixels; each
zoom level doubles the pixels, so zoom z has 2^z x 2^z tiles. A tile holds 4x4 cells of
64x36 pixels, and grid level g = z has (4 * 2^g)^2 cells. Past the finest grid level
(`levels`, chosen from the number of frames) the grid stays the same and its cells grow
instead: 2x2 cells of 128x72, then one 256x144 cell per tile, so the last two zoom levels
show the same frames at a higher resolution.

Cells. For every grid level, `CellIndex` keeps the non-empty cells as sorted keys
(row * cells_per_side + column) with the frame nearest each cell's centre among the
frames inside the cell: one sort per level when the map is published, then a tile or a
hover is a binary search. A cell with no frame inside it stays empty, so the zoomed-in
map shows the gaps between clusters instead of stretching one frame over them.
"""
import math

import numpy as np

from workers.pipeline.images import JPEG_QUALITY, encode_jpeg, resize_area

TILE_WIDTH, TILE_HEIGHT = 256, 144
CELLS_PER_TILE = 4  # per side, at a tile's own grid level
BACKGROUND = (24, 24, 27)  # RGB of empty cells; the page's map background matches it


def grid_levels_for(n_frames, finest=10):
    """The finest grid level worth having: one with cells for a few times the frames, so
    dense regions still separate when zoomed in. 273 frames -> 5, 100k -> 9, 1M -> 10."""
    per_side = math.sqrt(max(n_frames, 1)) / CELLS_PER_TILE
    return int(min(finest, max(2, math.ceil(math.log2(max(per_side, 1.0))) + 2)))


class TileGrid:
    """Zoom levels, tiles and cells of a map whose finest grid level is `levels`."""

    def __init__(self, levels):
        self.levels = int(levels)
        self.max_zoom = self.levels + 2  # cells grow to a whole tile

    def level(self, zoom):
        """The grid level shown at `zoom`."""
        return min(zoom, self.levels)

    @staticmethod
    def cells_per_side(level):
        return CELLS_PER_TILE << level

    def cells_per_tile(self, zoom):
        return CELLS_PER_TILE >> max(0, zoom - self.levels)

    def has_tile(self, zoom, column, row):
        return 0 <= zoom <= self.max_zoom and 0 <= column < (1 << zoom) and 0 <= row < (1 << zoom)

    def cells(self, xy, level):
        """Column and row of the cell of `level` holding each point (row 0 at the top, y = 1)."""
        n = self.cells_per_side(level)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        columns = np.clip(np.floor((xy[:, 0] + 1.0) / 2.0 * n), 0, n - 1).astype(np.int64)
        rows = np.clip(np.floor((1.0 - xy[:, 1]) / 2.0 * n), 0, n - 1).astype(np.int64)
        return columns, rows

    def cell_centres(self, columns, rows, level):
        n = self.cells_per_side(level)
        x = (np.asarray(columns) + 0.5) / n * 2.0 - 1.0
        y = 1.0 - (np.asarray(rows) + 0.5) / n * 2.0
        return np.stack([x, y], axis=-1)

    def tile_cells(self, zoom, column, row):
        """The grid level, and the columns and rows (2D, top-left first) of a tile's cells."""
        level, per_tile = self.level(zoom), self.cells_per_tile(zoom)
        columns, rows = np.meshgrid(np.arange(per_tile) + column * per_tile, np.arange(per_tile) + row * per_tile)
        return level, columns, rows


class CellIndex:
    """Per grid level, the non-empty cells and the frame (map row) each one shows.

    Stored flat over all levels: `keys` (int64, sorted within a level) and `rows`
    (int32), with level g at [offsets[g], offsets[g + 1])."""

    def __init__(self, grid, keys, rows, offsets):
        self.grid, self.keys, self.rows, self.offsets = grid, keys, rows, list(offsets)

    @classmethod
    def build(cls, grid, xy):
        keys, rows, offsets = [], [], [0]
        xy = np.asarray(xy, dtype=np.float64)
        for level in range(grid.levels + 1):
            columns, cell_rows = grid.cells(xy, level)
            key = cell_rows * grid.cells_per_side(level) + columns
            offset = xy - grid.cell_centres(columns, cell_rows, level)
            distance = np.einsum("ij,ij->i", offset, offset)
            order = np.lexsort((np.arange(len(key)), distance, key))  # nearest first; ties by map order
            sorted_keys = key[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = sorted_keys[1:] != sorted_keys[:-1]
            keys.append(sorted_keys[first])
            rows.append(order[first].astype(np.int32))
            offsets.append(offsets[-1] + int(first.sum()))
        return cls(grid, np.concatenate(keys), np.concatenate(rows), offsets)

    def lookup(self, level, columns, rows):
        """Map row shown in each cell (same shape as `columns`), -1 where the cell is empty."""
        start, stop = self.offsets[level], self.offsets[level + 1]
        wanted = (np.asarray(rows, dtype=np.int64) * self.grid.cells_per_side(level)
                  + np.asarray(columns, dtype=np.int64))
        if stop == start:
            return np.full(wanted.shape, -1, dtype=np.int64)
        level_keys = self.keys[start:stop]
        position = np.minimum(np.searchsorted(level_keys, wanted), len(level_keys) - 1)
        return np.where(level_keys[position] == wanted, self.rows[start + position], -1)

    def frame_at(self, x, y, zoom):
        """Map row of the thumbnail drawn at (x, y) at `zoom`, or None on an empty cell."""
        level = self.grid.level(zoom)
        columns, rows = self.grid.cells([[x, y]], level)
        row = int(self.lookup(level, columns, rows)[0])
        return None if row < 0 else row

    def distinct_frames(self, level):
        return self.offsets[level + 1] - self.offsets[level]


def render_tile(cells, zoom, column, row, read_frame, quality=JPEG_QUALITY):
    """JPEG bytes of one tile. `read_frame(map_row)` returns that frame's RGB pixels (any
    size; each is resized to its cell) or None when it cannot be read (the cell stays empty)."""
    level, columns, rows = cells.grid.tile_cells(zoom, column, row)
    shown = cells.lookup(level, columns, rows)
    per_tile = shown.shape[0]
    width, height = TILE_WIDTH // per_tile, TILE_HEIGHT // per_tile
    tile = np.empty((TILE_HEIGHT, TILE_WIDTH, 3), np.uint8)
    tile[:] = BACKGROUND
    for (i, j), map_row in np.ndenumerate(shown):
        if map_row < 0:
            continue
        frame = read_frame(int(map_row))
        if frame is None:
            continue
        tile[i * height:(i + 1) * height, j * width:(j + 1) * width] = resize_area(frame, width, height)
    return encode_jpeg(tile, quality)


# --- the tagger's overlay: each cell outlined in the colour of its frame's predicted label ---

# A fixed qualitative palette (Sasha Trubetskoy's 20 distinct colours), by the label's index
# in the tagger's classes; past 20 labels the colours repeat.
TAG_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
               "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
               "#808000", "#ffd8b1", "#000075", "#808080")
DIMMED = (0, 0, 0, 170)  # RGBA over the cells of other labels, when the overlay shows one label


def tag_colour(index):
    return TAG_COLOURS[index % len(TAG_COLOURS)]


def _rgba(colour):
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) + (255,)


def render_tag_overlay(cells, zoom, column, row, predicted, only=None):
    """RGBA pixels (TILE_HEIGHT, TILE_WIDTH, 4) to lay over tile (zoom, column, row): every
    cell that shows a frame gets a border and a square in its top-left corner in the colour
    of its frame's label (`predicted[map_row]`: an index into the tagger's classes); the rest
    is transparent. With `only` (a label's index), the cells of the other labels are dimmed
    instead, so that label's frames stand out."""
    level, columns, rows = cells.grid.tile_cells(zoom, column, row)
    shown = cells.lookup(level, columns, rows)
    per_tile = shown.shape[0]
    width, height = TILE_WIDTH // per_tile, TILE_HEIGHT // per_tile
    border, chip = max(3, width // 20), max(12, width // 5)  # 64x36 cells: 3 and 12 pixels
    overlay = np.zeros((TILE_HEIGHT, TILE_WIDTH, 4), np.uint8)
    for (i, j), map_row in np.ndenumerate(shown):
        if map_row < 0:
            continue
        label = int(predicted[map_row])
        cell = overlay[i * height:(i + 1) * height, j * width:(j + 1) * width]
        if only is not None and label != only:
            cell[:] = DIMMED
            continue
        colour = _rgba(tag_colour(label))
        cell[:border], cell[-border:], cell[:, :border], cell[:, -border:] = colour, colour, colour, colour
        cell[:chip, :chip] = colour
    return overlay
