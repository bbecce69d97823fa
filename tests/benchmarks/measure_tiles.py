"""How much of the screen the map's thumbnails fill, zoom by zoom, under four rules.

Layouts: gaussian clusters of 300 and of 5,000 points (fixed seeds). For every zoom level,
over the tiles that hold at least one frame ("content tiles"):

- median thumbnail: the median width x height, in CSS pixels, of the thumbnails drawn;
- covered: the fraction of the content tiles' pixels under a thumbnail;
- view: in a 1024x576 view (4x4 tiles) on the densest cluster, the fraction covered and
  the distinct frames shown: what a person zooming into that cluster sees.

Rules: "cells" draws every frame-bearing cell at its own size (the code before issue 16);
"grown" is workers/pipeline/tiles.py's `tile_placements`; "grown, no keep" the same rule
without a frame keeping its aligned 2x2 square (the issue's first sketch); "across tiles"
the issue's sketch with blocks free to cross tile edges (greedy over the whole map, so a
tile's drawing would depend on its neighbours'); its "covered" counts only the parts of
its thumbnails inside content tiles.

    .venv/bin/python tests/benchmarks/measure_tiles.py
"""
import statistics
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workers.pipeline import tiles  # noqa: E402
from workers.pipeline.tiles import TILE_HEIGHT, TILE_WIDTH, CellIndex, TileGrid, grid_levels_for  # noqa: E402


def clusters(n, seed):
    rng = np.random.default_rng(seed)
    centres, spreads = rng.uniform(-0.6, 0.6, (4, 2)), np.array([0.03, 0.08, 0.15, 0.3])
    which = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    return np.clip(centres[which] + rng.normal(0, 1, (n, 2)) * spreads[which, None], -1, 1), centres[0]


def content_tiles(cells, zoom):
    level, per_tile = cells.grid.level(zoom), cells.grid.cells_per_tile(zoom)
    n = cells.grid.cells_per_side(level)
    keys = cells.keys[cells.offsets[level]:cells.offsets[level + 1]]
    return sorted({(int(key % n) // per_tile, int(key // n) // per_tile) for key in keys})


def per_tile_rule(cells, zoom, kind):
    """{tile: [(top, left, size), ...]} in the tile's cells."""
    def place(column, row):
        if kind == "cells":
            level, columns, rows = cells.grid.tile_cells(zoom, column, row)
            shown = cells.lookup(level, columns, rows)
            return [(int(i), int(j), 1) for i, j in zip(*np.nonzero(shown >= 0))]
        return [(p.top, p.left, p.size) for p in tiles.tile_placements(cells, zoom, column, row)]
    if kind == "grown, no keep":
        with mock.patch.object(tiles, "_alone_in_squares", lambda owner, homes, size: np.full(owner.shape, -1)):
            return {tile: place(*tile) for tile in content_tiles(cells, zoom)}
    return {tile: place(*tile) for tile in content_tiles(cells, zoom)}


def across_tiles(cells, zoom):
    """The issue's greedy over the whole map at once, as {tile: [(top, left, size) clipped]}."""
    grid = cells.grid
    level, per_tile = grid.level(zoom), grid.cells_per_tile(zoom)
    n = grid.cells_per_side(level)
    keys = cells.keys[cells.offsets[level]:cells.offsets[level + 1]]
    homes = [(int(key // n), int(key % n)) for key in keys]  # sorted keys: row-major
    xy = np.asarray(cells.xy)[cells.rows[cells.offsets[level]:cells.offsets[level + 1]]]
    places = np.stack([(xy[:, 0] + 1) / 2 * n, (1 - xy[:, 1]) / 2 * n], axis=1)
    owner = np.full((n, n), -1, np.int64)
    for k, (i, j) in enumerate(homes):
        owner[i, j] = k
    size_of = {}
    for size in (4, 2, 1):
        if size > per_tile:
            continue
        for k, (i, j) in enumerate(homes):
            if k in size_of:
                continue
            best = None
            for top in range(max(0, i - size + 1), min(i, n - size) + 1):
                for left in range(max(0, j - size + 1), min(j, n - size) + 1):
                    block = owner[top:top + size, left:left + size]
                    if ((block != -1) & (block != k)).any():
                        continue
                    distance = (left + size / 2 - places[k, 0]) ** 2 + (top + size / 2 - places[k, 1]) ** 2
                    if best is None or distance < best[0]:
                        best = (distance, top, left)
            if best is not None:
                owner[best[1]:best[1] + size, best[2]:best[2] + size] = k
                size_of[k] = (best[1], best[2], size)
    drawn = {}
    for top, left, size in size_of.values():  # every thumbnail once, for its size; coverage from `owner`
        drawn.setdefault((left // per_tile, top // per_tile), []).append((top, left, size))
    return drawn, owner, per_tile


def measure(cells, zoom, kind, view_tiles):
    per_tile = cells.grid.cells_per_tile(zoom)
    cell_w = TILE_WIDTH // per_tile
    if kind == "across tiles":
        drawn, owner, _ = across_tiles(cells, zoom)
        sizes = [size for placed in drawn.values() for _, _, size in placed]
        covered = {(c, r): int((owner[r * per_tile:(r + 1) * per_tile, c * per_tile:(c + 1) * per_tile] >= 0).sum())
                   for c, r in content_tiles(cells, zoom)}
        view_cover = sum(int((owner[r * per_tile:(r + 1) * per_tile, c * per_tile:(c + 1) * per_tile] >= 0).sum())
                         for c, r in view_tiles if 0 <= r < 1 << zoom and 0 <= c < 1 << zoom)
        view_frames = len(np.unique(np.concatenate([owner[r * per_tile:(r + 1) * per_tile,
                                                          c * per_tile:(c + 1) * per_tile].ravel()
                                                    for c, r in view_tiles if 0 <= r < 1 << zoom
                                                    and 0 <= c < 1 << zoom] + [np.array([-1])]))) - 1
    else:
        drawn = per_tile_rule(cells, zoom, kind)
        sizes = [size for placed in drawn.values() for _, _, size in placed]
        covered = {tile: sum(size * size for _, _, size in placed) for tile, placed in drawn.items()}
        in_view = [drawn[tile] for tile in view_tiles if tile in drawn]
        view_cover = sum(size * size for placed in in_view for _, _, size in placed)
        view_frames = sum(len(placed) for placed in in_view)
    side = statistics.median(sizes) * cell_w
    return {"thumb": f"{side:g}x{side * 9 / 16:g}", "covered": sum(covered.values()) / (len(covered) * per_tile ** 2),
            "view": view_cover / (len(view_tiles) * per_tile ** 2), "frames": view_frames}


RULES = ("cells", "grown", "grown, no keep", "across tiles")


def main():
    for n, seed in ((300, 0), (5000, 1)):
        xy, densest = clusters(n, seed)
        grid = TileGrid(grid_levels_for(n))
        cells = CellIndex.build(grid, xy)
        print(f"\n{n} points, grid levels 0-{grid.levels}, zoom 0-{grid.max_zoom}. Per rule: median thumbnail "
              f"(CSS px) / covered / view covered / frames in view\n")
        print("| zoom | " + " | ".join(RULES) + " |")
        print("| --- |" + " --- |" * len(RULES))
        for zoom in range(grid.max_zoom + 1):
            tiles_a_side = 1 << zoom
            c = int((densest[0] + 1) / 2 * tiles_a_side)
            r = int((1 - densest[1]) / 2 * tiles_a_side)
            view = [(c + dc, r + dr) for dc in range(-2, 2) for dr in range(-2, 2)]
            row = []
            for kind in RULES:
                m = measure(cells, zoom, kind, view)
                row.append(f"{m['thumb']} / {m['covered']:.0%} / {m['view']:.0%} / {m['frames']}")
            print(f"| {zoom} | " + " | ".join(row) + " |")
    print(f"\n(a tile is {TILE_WIDTH}x{TILE_HEIGHT} CSS px; the view is 4x4 tiles around the densest cluster's centre)")


if __name__ == "__main__":
    main()
