"""The map as image tiles: at each zoom level the plane is a grid of cells, and each cell
that holds frames shows the one nearest its centre (the article's grid tiling), grown into
the free cells around it.

Geometry. The map is the square [-1, 1]^2 of the layout, drawn 16:9 like the frames, so
that every cell holds a whole thumbnail. At zoom 0 it is one tile of 256x144 pixels; each
zoom level doubles the pixels, so zoom z has 2^z x 2^z tiles. A tile holds 4x4 cells of
64x36 pixels, and grid level g = z has (4 * 2^g)^2 cells. Past the finest grid level
(`levels`, chosen from the number of frames) the grid stays the same and its cells grow
instead: 2x2 cells of 128x72, then one 256x144 cell per tile. A tile may also be drawn
at twice the pixels (`scale=2`, 512x288) for high-DPI screens: the deepest thumbnail is
then 512x288, still no larger than a frame of the frame store (534x300 by default).

Placements. Within a tile, each frame-bearing cell's thumbnail takes the largest square
block of s x s cells (s = 4, 2, 1, at most the tile) that holds its own cell, lies inside
the tile and holds no other frame-bearing cell nor another thumbnail (`tile_placements`):
every 4 first, then every 2, then 1; among the blocks a frame may take, the one centred
nearest the frame's own place. While the 2s are given out, a frame alone in its aligned
2x2 square (one cell of the zoom before) keeps that square for itself, so such a frame is
drawn at least as large as that cell now appears: zooming in, a thumbnail grows with the
map until other frames need the room. Drawing (`render_tile`, `render_tag_overlay`) and
hit-testing (`CellIndex.placement_at`) all read these placements. A thumbnail is never
larger than a tile, so tiles are drawn independently of their neighbours.

Cells. For every grid level, `CellIndex` keeps the non-empty cells as sorted keys
(row * cells_per_side + column) with the frame nearest each cell's centre among the
frames inside the cell: one sort per level when the map is published, then a tile's 16
cells are binary searches, and a tile or a hover places them (`tile_placements`). A cell
with no frame inside it stays empty unless a neighbour grows over it, so the zoomed-in map
still shows the gaps between clusters.
"""
import math
from collections import namedtuple

import numpy as np

from workers.pipeline.images import JPEG_QUALITY, encode_jpeg, resize_area

TILE_WIDTH, TILE_HEIGHT = 256, 144
# The placement rule's revision, in tile URLs and the tile cache's folder: browsers keep tiles
# for a year, so tiles drawn by another rule (v1: one cell a frame) never show beside the
# hit-testing of this one. Bump it when tile_placements changes what it draws.
LAYOUT_REVISION = "v2"
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
    (int32), with level g at [offsets[g], offsets[g + 1]). `xy`, the frames' places (the
    layout), lets a thumbnail grow towards its frame's own place; without it, towards the
    centre of its cell."""

    def __init__(self, grid, keys, rows, offsets, xy=None):
        self.grid, self.keys, self.rows, self.offsets = grid, keys, rows, list(offsets)
        self.xy = xy

    @classmethod
    def build(cls, grid, xy, shown=None):
        """The cells of the frames at places `xy` (every map row), or only of the map rows
        `shown` (ascending: the map with some frames hidden, as copies are)."""
        keys, rows, offsets = [], [], [0]
        xy = np.asarray(xy, dtype=np.float64)
        shown = np.arange(len(xy)) if shown is None else np.asarray(shown, dtype=np.int64)
        places = xy[shown]
        for level in range(grid.levels + 1):
            columns, cell_rows = grid.cells(places, level)
            key = cell_rows * grid.cells_per_side(level) + columns
            offset = places - grid.cell_centres(columns, cell_rows, level)
            distance = np.einsum("ij,ij->i", offset, offset)
            order = np.lexsort((np.arange(len(key)), distance, key))  # nearest first; ties by map order
            sorted_keys = key[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = sorted_keys[1:] != sorted_keys[:-1]
            keys.append(sorted_keys[first])
            rows.append(shown[order[first]].astype(np.int32))
            offsets.append(offsets[-1] + int(first.sum()))
        return cls(grid, np.concatenate(keys), np.concatenate(rows), offsets, xy)

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

    def placement_at(self, x, y, zoom):
        """(map row, box) of the thumbnail drawn over (x, y) at `zoom`, box = [x0, y0, x1, y1]
        in map coordinates (y up); None where nothing is drawn."""
        level, per_tile = self.grid.level(zoom), self.grid.cells_per_tile(zoom)
        columns, rows = self.grid.cells([[x, y]], level)
        column, row = int(columns[0]), int(rows[0])
        for placed in tile_placements(self, zoom, column // per_tile, row // per_tile):
            top, left = row // per_tile * per_tile + placed.top, column // per_tile * per_tile + placed.left
            if top <= row < top + placed.size and left <= column < left + placed.size:
                step = 2.0 / self.grid.cells_per_side(level)
                x0, y1 = -1.0 + left * step, 1.0 - top * step
                return placed.map_row, [x0, y1 - placed.size * step, x0 + placed.size * step, y1]
        return None

    def frame_at(self, x, y, zoom):
        """Map row of the thumbnail drawn at (x, y) at `zoom`, or None where nothing is drawn."""
        hit = self.placement_at(x, y, zoom)
        return None if hit is None else hit[0]

    def distinct_frames(self, level):
        return self.offsets[level + 1] - self.offsets[level]


Placement = namedtuple("Placement", "map_row top left size")
Placement.__doc__ = """A thumbnail in a tile: the frame at `map_row` over the block of size x size
cells whose top-left cell is (`top`, `left`), counted in the tile's own cells
(`TileGrid.cells_per_tile(zoom)` a side; 0, 0 at the tile's top-left)."""


def tile_placements(cells, zoom, column, row):
    """The thumbnails of tile (zoom, column, row), one per frame-bearing cell, in the
    row-major order of their cells (the module's docstring gives the rule). Pure and
    deterministic: drawing and hit-testing call it alike."""
    level, columns, rows = cells.grid.tile_cells(zoom, column, row)
    shown = cells.lookup(level, columns, rows)
    per_tile = shown.shape[0]
    homes = [(int(i), int(j)) for i, j in zip(*np.nonzero(shown >= 0))]
    owner = np.full(shown.shape, -1)  # which frame (index into homes) holds each cell
    for k, (i, j) in enumerate(homes):
        owner[i, j] = k
    places = _places_in_tile(cells, level, shown, homes, column * per_tile, row * per_tile)
    placed = {}
    for size in (4, 2):
        if size > per_tile or len(placed) == len(homes):
            continue
        reserved = _alone_in_squares(owner, homes, size) if size < per_tile else np.full(shown.shape, -1)
        for k, (i, j) in enumerate(homes):
            if k in placed:
                continue
            best, (u, v) = None, places[k]
            for top in range(max(0, i - size + 1), min(i, per_tile - size) + 1):
                for left in range(max(0, j - size + 1), min(j, per_tile - size) + 1):
                    block = (slice(top, top + size), slice(left, left + size))
                    if ((owner[block] != -1) & (owner[block] != k)).any() or \
                            ((reserved[block] != -1) & (reserved[block] != k)).any():
                        continue
                    distance = (left + size / 2 - u) ** 2 + (top + size / 2 - v) ** 2
                    if best is None or distance < best[0]:  # strict: ties keep the first, row-major
                        best = (distance, top, left)
            if best is not None:
                _, top, left = best
                owner[top:top + size, left:left + size] = k
                reserved[reserved == k] = -1  # the rest of its square is free again
                placed[k] = Placement(int(shown[i, j]), top, left, size)
    # The rest keep their own cell, which no block of another frame holds.
    return [placed.get(k) or Placement(int(shown[i, j]), i, j, 1) for k, (i, j) in enumerate(homes)]


def _places_in_tile(cells, level, shown, homes, first_column, first_row):
    """Each shown frame's place in the tile's cell units (x right, y down); its cell's
    centre when the index has no layout."""
    if cells.xy is None:
        return [(j + 0.5, i + 0.5) for i, j in homes]
    n = cells.grid.cells_per_side(level)
    xy = np.asarray(cells.xy[[int(shown[i, j]) for i, j in homes]], dtype=np.float64).reshape(-1, 2)
    return list(zip((xy[:, 0] + 1.0) / 2.0 * n - first_column, (1.0 - xy[:, 1]) / 2.0 * n - first_row))


def _alone_in_squares(owner, homes, size):
    """For each cell, the frame that is alone in its aligned size x size square (which that
    frame keeps while blocks of this size are given out), else -1."""
    reserved = np.full(owner.shape, -1)
    for k, (i, j) in enumerate(homes):
        square = (slice(i // size * size, (i // size + 1) * size), slice(j // size * size, (j // size + 1) * size))
        if (owner[square] != -1).sum() == 1:
            reserved[square] = k
    return reserved


def _tile_pixels(cells, zoom, scale):
    """Pixels of one cell (width, height) and the tile's shape, at `scale` pixels a CSS pixel."""
    per_tile = cells.grid.cells_per_tile(zoom)
    return TILE_WIDTH * scale // per_tile, TILE_HEIGHT * scale // per_tile, (TILE_HEIGHT * scale, TILE_WIDTH * scale)


def draw_tile(cells, zoom, column, row, read_frame, scale=1):
    """RGB pixels of one tile (144 x 256 x `scale`^2). `read_frame(map_row)` returns that
    frame's RGB pixels (any size; each is resized to its placement) or None when it cannot
    be read (its placement stays empty)."""
    width, height, shape = _tile_pixels(cells, zoom, scale)
    tile = np.empty(shape + (3,), np.uint8)
    tile[:] = BACKGROUND
    for placed in tile_placements(cells, zoom, column, row):
        frame = read_frame(placed.map_row)
        if frame is None:
            continue
        top, left = placed.top * height, placed.left * width
        tile[top:top + placed.size * height, left:left + placed.size * width] = \
            resize_area(frame, placed.size * width, placed.size * height)
    return tile


def render_tile(cells, zoom, column, row, read_frame, quality=JPEG_QUALITY, scale=1):
    """JPEG bytes of one tile (`draw_tile`)."""
    return encode_jpeg(draw_tile(cells, zoom, column, row, read_frame, scale), quality)


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


def render_tag_overlay(cells, zoom, column, row, predicted, only=None, scale=1):
    """RGBA pixels (TILE_HEIGHT, TILE_WIDTH, 4, times `scale`) to lay over tile (zoom,
    column, row): every thumbnail gets a border and a square in its top-left corner in the
    colour of its frame's label (`predicted[map_row]`: an index into the tagger's classes);
    the rest is transparent. With `only` (a label's index), the thumbnails of the other
    labels are dimmed instead, so that label's frames stand out."""
    width, height, shape = _tile_pixels(cells, zoom, scale)
    overlay = np.zeros(shape + (4,), np.uint8)
    for placed in tile_placements(cells, zoom, column, row):
        label = int(predicted[placed.map_row])
        top, left = placed.top * height, placed.left * width
        box = overlay[top:top + placed.size * height, left:left + placed.size * width]
        if only is not None and label != only:
            box[:] = DIMMED
            continue
        css_width = placed.size * width // scale
        border, chip = max(3, css_width // 20) * scale, max(12, css_width // 5) * scale  # 64x36: 3 and 12
        colour = _rgba(tag_colour(label))
        box[:border], box[-border:], box[:, :border], box[:, -border:] = colour, colour, colour, colour
        box[:chip, :chip] = colour
    return overlay
