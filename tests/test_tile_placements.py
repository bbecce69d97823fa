"""Thumbnails grown into free cells (workers/pipeline/tiles.py `tile_placements`): the
properties that hold on fixed layouts, drawing and hit-testing agreeing pixel for pixel,
and tiles at twice the pixels for high-DPI screens."""
import functools

import numpy as np
import pytest

from workers.pipeline import tiles
from workers.pipeline.images import resize_area
from workers.pipeline.tiles import (BACKGROUND, TILE_HEIGHT, TILE_WIDTH, CellIndex, TileGrid, draw_tile,
                                    grid_levels_for, tile_placements)


def clusters(n, seed):
    """Gaussian clusters of different spreads, as a layout makes them."""
    rng = np.random.default_rng(seed)
    centres, spreads = rng.uniform(-0.6, 0.6, (4, 2)), np.array([0.03, 0.08, 0.15, 0.3])
    which = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    return np.clip(centres[which] + rng.normal(0, 1, (n, 2)) * spreads[which, None], -1, 1)


@functools.lru_cache(maxsize=None)
def layout(n, seed):
    xy = clusters(n, seed)
    return CellIndex.build(TileGrid(grid_levels_for(n)), xy)


def content_tiles(cells, zoom):
    """The tiles of `zoom` that hold at least one frame-bearing cell."""
    level, per_tile = cells.grid.level(zoom), cells.grid.cells_per_tile(zoom)
    n = cells.grid.cells_per_side(level)
    keys = cells.keys[cells.offsets[level]:cells.offsets[level + 1]]
    return sorted({(int(key % n) // per_tile, int(key // n) // per_tile) for key in keys})


def shown(cells, zoom, column, row):
    level, columns, rows = cells.grid.tile_cells(zoom, column, row)
    return cells.lookup(level, columns, rows)


LAYOUTS = [(300, 0), (3000, 1)]


@pytest.mark.parametrize("n, seed", LAYOUTS)
def test_placements_cover_their_own_cell_and_never_overlap(n, seed):
    cells = layout(n, seed)
    for zoom in range(cells.grid.max_zoom + 1):
        per_tile = cells.grid.cells_per_tile(zoom)
        for column, row in content_tiles(cells, zoom):
            frames = shown(cells, zoom, column, row)
            placed = tile_placements(cells, zoom, column, row)
            assert sorted(p.map_row for p in placed) == sorted(frames[frames >= 0].tolist())  # each frame once
            cover = np.zeros(frames.shape, int)
            for p in placed:
                assert p.size in (1, 2, 4) and p.size <= per_tile  # never larger than a tile
                assert 0 <= p.top <= per_tile - p.size and 0 <= p.left <= per_tile - p.size
                block = frames[p.top:p.top + p.size, p.left:p.left + p.size]
                assert (block == p.map_row).sum() == 1 and (block >= 0).sum() == 1  # its own cell, no other
                cover[p.top:p.top + p.size, p.left:p.left + p.size] += 1
            assert cover.max() <= 1


@pytest.mark.parametrize("n, seed", LAYOUTS)
def test_a_frame_is_drawn_at_least_as_large_as_the_aligned_square_it_is_alone_in(n, seed):
    """The rule's "never sparser" guarantee: a frame alone in its tile fills it (a tile is one
    cell of two zooms before); a frame alone in its aligned 2x2 square (one cell of the zoom
    before) gets at least that square, so zooming in grows its thumbnail with the map until
    other frames need the room."""
    cells = layout(n, seed)
    alone_in_tile = alone_in_square = 0
    for zoom in range(cells.grid.max_zoom + 1):
        per_tile = cells.grid.cells_per_tile(zoom)
        for column, row in content_tiles(cells, zoom):
            frames = shown(cells, zoom, column, row)
            for p in tile_placements(cells, zoom, column, row):
                (i,), (j,) = np.nonzero(frames == p.map_row)
                for size in (4, 2, 1):
                    square = frames[i // size * size:(i // size + 1) * size, j // size * size:(j // size + 1) * size]
                    if size <= per_tile and (square >= 0).sum() == 1:
                        break
                assert p.size >= size, (zoom, column, row, p)
                alone_in_tile += size == per_tile
                alone_in_square += size == 2 < per_tile
    assert alone_in_tile > 10 and alone_in_square > 10  # both cases were seen


def test_a_frame_alone_in_its_tile_fills_it_and_frames_grow_towards_their_places():
    grid = TileGrid(2)
    xy = np.array([[-0.95, 0.95], [0.3, 0.55], [0.55, 0.55]])
    cells = CellIndex.build(grid, xy)
    assert tile_placements(cells, 1, 0, 0) == [tiles.Placement(0, 0, 0, 4)]
    # Frames 1 and 2 share tile (1, 0) of zoom 1, in neighbouring cells (row 1, columns 1 and 2 of
    # the tile), both near the bottom of their cells: neither may hold the other's cell, so frame 1
    # grows left and frame 2 right, and both down, towards their places (rows 1-2, across the
    # aligned squares).
    assert tile_placements(cells, 1, 1, 0) == [tiles.Placement(1, 1, 0, 2), tiles.Placement(2, 1, 2, 2)]
    # Without the layout, blocks grow towards the cells' centres: up and down are as near, and the
    # tie goes to the first block, row-major (each keeps the aligned square it is alone in).
    bare = CellIndex(grid, cells.keys, cells.rows, cells.offsets)
    assert tile_placements(bare, 1, 1, 0) == [tiles.Placement(1, 0, 0, 2), tiles.Placement(2, 0, 2, 2)]


@pytest.mark.parametrize("n, seed", LAYOUTS)
def test_zooming_in_never_shows_fewer_distinct_frames_in_a_tiles_region(n, seed):
    cells = layout(n, seed)
    for zoom in range(cells.grid.max_zoom):
        for column, row in content_tiles(cells, zoom):
            here = {p.map_row for p in tile_placements(cells, zoom, column, row)}
            deeper = {p.map_row for dc in (0, 1) for dr in (0, 1)
                      for p in tile_placements(cells, zoom + 1, 2 * column + dc, 2 * row + dr)}
            assert len(deeper) >= len(here)


def colour_of(map_row):
    return np.array([40 + map_row % 200, 40 + map_row // 200 % 200, 200], np.uint8)  # never BACKGROUND


@pytest.mark.parametrize("n, seed, zoom", [(300, 0, 2), (300, 0, 4), (300, 0, 6), (3000, 1, 5)])
def test_hit_testing_agrees_with_drawing_at_every_pixel_centre(n, seed, zoom, monkeypatch):
    cells = layout(n, seed)
    # The densest tile of the zoom: the most thumbnails, and so the most edges between them.
    column, row = max(content_tiles(cells, zoom), key=lambda tile: (shown(cells, zoom, *tile) >= 0).sum())
    pixels = draw_tile(cells, zoom, column, row, lambda r: np.broadcast_to(colour_of(r), (30, 53, 3)))
    monkeypatch.setattr(tiles, "tile_placements", functools.lru_cache()(tiles.tile_placements))  # pure: same answers
    side = 2.0 / (1 << zoom)
    for py in range(TILE_HEIGHT):
        for px in range(TILE_WIDTH):
            x = -1.0 + side * (column + (px + 0.5) / TILE_WIDTH)
            y = 1.0 - side * (row + (py + 0.5) / TILE_HEIGHT)
            hit = cells.placement_at(x, y, zoom)
            if hit is None:
                assert tuple(pixels[py, px]) == BACKGROUND, (px, py)
                continue
            map_row, (x0, y0, x1, y1) = hit
            assert (pixels[py, px] == colour_of(map_row)).all(), (px, py, map_row)
            assert x0 <= x < x1 and y0 < y <= y1
            assert cells.frame_at(x, y, zoom) == map_row


def test_the_box_of_a_hit_is_its_thumbnail_on_the_map():
    grid = TileGrid(2)
    cells = CellIndex.build(grid, np.array([[-0.95, 0.95], [0.95, -0.95]]))
    assert cells.placement_at(-0.9, 0.9, 0) == (0, [-1.0, 0.0, 0.0, 1.0])  # the top-left 2x2 of zoom 0's cells
    assert cells.placement_at(-0.1, 0.1, 0) == (0, [-1.0, 0.0, 0.0, 1.0])  # a cell it grew over
    assert cells.placement_at(-0.5, 0.1, 1) == (0, [-1.0, 0.0, 0.0, 1.0])  # alone in its tile of zoom 1
    assert cells.placement_at(0.5, 0.5, 0) is None and cells.frame_at(0.5, 0.5, 1) is None
    assert cells.frame_at(0.1, -0.1, 0) == 1


def test_high_dpi_tiles_have_twice_the_pixels_and_the_deepest_thumbnail_is_frame_store_sized():
    grid = TileGrid(2)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 300, 534, 3), dtype=np.uint8)  # the frame store's default size
    cells = CellIndex.build(grid, np.array([[0.1, 0.1], [-0.6, -0.6]]))
    deepest = grid.max_zoom
    column, row = (int(v[0]) // grid.cells_per_tile(deepest) for v in grid.cells([[0.1, 0.1]], grid.levels))
    sharp = draw_tile(cells, deepest, column, row, lambda r: frames[r], scale=2)
    assert sharp.shape == (2 * TILE_HEIGHT, 2 * TILE_WIDTH, 3)
    np.testing.assert_array_equal(sharp, resize_area(frames[0], 512, 288))  # shrunk from 534x300, not grown
    # Scale 2 draws the same placements as scale 1, at twice the pixels.
    one, two = (draw_tile(cells, 0, 0, 0, lambda r: np.broadcast_to(colour_of(r), (300, 534, 3)), scale=s)
                for s in (1, 2))
    np.testing.assert_array_equal(two, one.repeat(2, axis=0).repeat(2, axis=1))
