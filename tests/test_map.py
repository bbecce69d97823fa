"""The map's pure parts: tile cells, tiles, similar and dissimilar clips, published snapshots."""
import os

import cv2
import numpy as np
import pytest

from workers.pipeline.arrays import ArrayWriter, open_array
from workers.pipeline.clips import Spans, clip_windows, most_dissimilar_clips, similar_clips
from workers.pipeline.map_versions import MapSnapshot, map_version, publish_map, remove_old_maps
from workers.pipeline.neighbours import NeighbourIndex
from workers.pipeline.tiles import (BACKGROUND, TILE_HEIGHT, TILE_WIDTH, CellIndex, TileGrid, grid_levels_for,
                                    render_tile)

INDEX_DTYPE = [("source", "<i8"), ("frame", "<i8"), ("time", "<f8")]


def test_each_cell_shows_the_frame_nearest_its_centre_among_the_frames_inside_it():
    rng = np.random.default_rng(1)
    xy = np.clip(rng.normal(0, 0.4, (3000, 2)), -1, 1)
    grid = TileGrid(3)
    cells = CellIndex.build(grid, xy)
    for level in range(grid.levels + 1):
        n = grid.cells_per_side(level)
        columns, rows = np.meshgrid(np.arange(n), np.arange(n))
        shown = cells.lookup(level, columns, rows)
        point_columns, point_rows = grid.cells(xy, level)
        for column, row in [(0, 0), (n // 2, n // 2), (n // 2 - 1, n // 2), (n - 1, 3 % n), (1, n - 2)]:
            inside = np.flatnonzero((point_columns == column) & (point_rows == row))
            if len(inside) == 0:
                assert shown[row, column] == -1
                continue
            centre = grid.cell_centres(column, row, level)
            expected = inside[np.argmin(np.linalg.norm(xy[inside] - centre, axis=1))]
            assert shown[row, column] == expected
        assert (shown >= 0).sum() == cells.distinct_frames(level) == len(set(zip(point_columns, point_rows)))
    # Hit-testing agrees with the tiles: the frame at a point is the one its cell shows.
    x, y = xy[17]
    level = grid.level(2)
    column, row = (int(v[0]) for v in grid.cells([[x, y]], level))
    assert cells.frame_at(x, y, 2) == cells.lookup(level, [column], [row])[0]


def test_zooming_in_shows_more_distinct_frames_then_bigger_cells():
    grid = TileGrid(grid_levels_for(5000))
    assert grid.levels == 7 and grid.max_zoom == 9
    cells = CellIndex.build(grid, np.random.default_rng(2).uniform(-1, 1, (5000, 2)))
    counts = [cells.distinct_frames(level) for level in range(grid.levels + 1)]
    assert counts == sorted(counts) and counts[0] == 16 and counts[-1] > 2000
    assert [grid.cells_per_tile(z) for z in range(grid.max_zoom + 1)] == [4] * 8 + [2, 1]
    assert grid.has_tile(9, 511, 511) and not grid.has_tile(9, 512, 0) and not grid.has_tile(10, 0, 0)
    assert not grid.has_tile(-1, 0, 0) and not grid.has_tile(2, -1, 0)


def test_a_tile_draws_each_cells_frame_resized_into_its_placement():
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)
    frames = np.repeat(colours[:, None, None, :], 300 * 534, axis=1).reshape(3, 300, 534, 3)
    xy = np.array([[-0.9, 0.9], [0.9, -0.9], [0.05, 0.05]])  # top-left, bottom-right, centre
    grid = TileGrid(2)
    cells = CellIndex.build(grid, xy)
    tile = cv2.imdecode(np.frombuffer(render_tile(cells, 0, 0, 0, lambda row: frames[row]), np.uint8),
                        cv2.IMREAD_COLOR)[..., ::-1]
    assert tile.shape == (TILE_HEIGHT, TILE_WIDTH, 3)
    cell_w, cell_h = TILE_WIDTH // 4, TILE_HEIGHT // 4

    def cell(column, row):
        return tile[row * cell_h + 4:(row + 1) * cell_h - 4, column * cell_w + 4:(column + 1) * cell_w - 4]

    assert np.abs(cell(0, 0).astype(int) - colours[0]).max() < 12
    assert np.abs(cell(3, 3).astype(int) - colours[1]).max() < 12
    assert np.abs(cell(2, 1).astype(int) - colours[2]).max() < 12
    assert np.abs(cell(1, 2).astype(int) - BACKGROUND).max() < 12  # nothing there
    # Each frame is alone in its quarter of the tile, so it grows over that quarter's free cells.
    assert np.abs(cell(1, 1).astype(int) - colours[0]).max() < 12
    assert np.abs(cell(3, 0).astype(int) - colours[2]).max() < 12
    # At the deepest zoom one frame fills the whole tile that holds it.
    deepest = grid.max_zoom
    column, row = (int(v[0]) for v in grid.cells([xy[2]], grid.levels))
    full = cv2.imdecode(np.frombuffer(render_tile(cells, deepest, column, row, lambda r: frames[r]), np.uint8),
                        cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(full[8:-8, 8:-8].astype(int) - colours[2]).max() < 12


def walks(n_videos, length, dims=32, seed=0):
    """Videos as smooth random walks in embedding space, one frame per second."""
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(0, 1, (length, dims)), axis=0).astype(np.float32) for _ in range(n_videos)]


def collection_arrays(videos, times=None):
    vectors = np.concatenate(videos)
    sources = np.concatenate([np.full(len(v), i + 1) for i, v in enumerate(videos)])
    times = np.concatenate(times or [np.arange(len(v), dtype=float) for v in videos])
    return sources, times, vectors


def test_similar_clips_finds_the_copy_of_a_clip_at_the_same_moment_and_leaves_out_the_query():
    videos = walks(6, 60)
    rng = np.random.default_rng(5)
    copy = videos[0][10:50] + rng.normal(0, 0.05, (40, 32)).astype(np.float32)  # seconds 10-50, re-encoded
    videos.append(copy)
    times = [np.arange(len(v), dtype=float) for v in videos[:-1]] + [np.arange(40, dtype=float) + 0.2]
    sources, times, vectors = collection_arrays(videos, times)
    spans = Spans.from_sources(sources)
    neighbours = NeighbourIndex().fit(vectors)
    query = (30 - 3, 30 + 4)  # seconds 27-33 of video 1
    clips = similar_clips(query, sources, times, vectors, spans, neighbours, typical=40.0, seconds=6, top=5)
    assert clips[0]["source"] == 7
    assert clips[0]["offset"] == pytest.approx(-10 + 0.2, abs=0.01)  # copy starts 10 s into the original
    assert clips[0]["score"] > 0.9 > clips[1]["score"]
    assert len(clips[0]["rows"]) == 7
    assert all(not (c["source"] == 1 and abs(c["offset"]) < 6) for c in clips)
    assert [c["score"] for c in clips] == sorted((c["score"] for c in clips), reverse=True)
    assert any(c["source"] == 1 for c in similar_clips(query, sources, times, vectors, spans, neighbours, typical=40.0,
                                                        seconds=6, top=30))
    others = similar_clips(query, sources, times, vectors, spans, neighbours, typical=40.0, seconds=6, top=30,
                           other_sources_only=True)
    assert others and all(c["source"] != 1 for c in others) and others[0]["source"] == 7


def test_similar_clips_with_an_approximate_index_at_scale():
    videos = walks(400, 300, dims=64, seed=3)  # 120,000 frames
    videos.append(videos[123][100:200] + 0.01)
    sources, times, vectors = collection_arrays(videos)
    neighbours = NeighbourIndex(exact_limit=50_000).fit(vectors)
    assert type(neighbours.index_).__name__ == "IndexIVFScalarQuantizer"
    start = 123 * 300 + 150
    clips = similar_clips((start - 3, start + 4), sources, times, vectors, Spans.from_sources(sources),
                          neighbours, typical=60.0, seconds=6)
    assert clips[0]["source"] == 401 and clips[0]["offset"] == pytest.approx(-100)


def test_most_dissimilar_clips_come_from_different_places():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (5, 16))
    videos = [np.repeat(centres[i % 5][None], 12, axis=0) + rng.normal(0, 0.1, (12, 16)) for i in range(20)]
    sources, times, vectors = collection_arrays(videos)
    windows = clip_windows(sources, times, seconds=6)
    assert len(windows) == 40 and (windows[:, 1] - windows[:, 0] == 6).all()
    picked = most_dissimilar_clips(windows, vectors.astype(np.float32), count=5, batch_rows=50)
    groups = {int(sources[windows[p, 0]] - 1) % 5 for p in picked}
    assert groups == {0, 1, 2, 3, 4}


def write_embedding(folder, index, vectors, layout):
    for name, values, shape in (("index", index, ()), ("pca", vectors, (vectors.shape[1],)), ("layout", layout, (2,))):
        with ArrayWriter(folder, name, shape, values.dtype, {"stage": "test", "name": name}) as out:
            out.append(values)


def test_a_published_map_is_a_snapshot_that_survives_a_new_layout(tmp_path):
    videos = walks(4, 20, dims=16)
    sources, times, vectors = collection_arrays(videos)
    index = np.array(list(zip(sources, np.arange(len(sources)) * 10, times)), dtype=INDEX_DTYPE)
    layout = np.random.default_rng(0).uniform(-1, 1, (len(sources), 2)).astype(np.float32)
    embedding, maps = tmp_path / "embedding", tmp_path / "maps"
    write_embedding(embedding, index, vectors, layout)
    version = map_version({"stage": "test"}, clip_seconds=6.0)
    published = publish_map(embedding, maps, version, clip_seconds=6.0, dissimilar=3)
    assert publish_map(embedding, maps, version) == published  # idempotent
    snapshot = MapSnapshot(published, tmp_path / "sources")
    assert len(snapshot) == 80 and len(snapshot.dissimilar()) == 3
    assert snapshot.row_of(3, index[45]["frame"]) == 45 and snapshot.row_of(3, 1) is None
    assert snapshot.row_of(99, 0) is None and snapshot.path(99) is None
    assert snapshot.path(2)["times"].tolist() == times[20:40].tolist()
    # Tiles cached by the code before grown thumbnails (tiles/) are never served: they drew
    # another layout than the one hit-testing now answers for.
    old = published / "tiles" / "0" / "0" / "0.jpg"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"a tile of one cell per frame")
    assert snapshot.tile(0, 0, 0) == published / "tiles-v2" / "0" / "0" / "0.jpg"
    assert snapshot.tile(0, 0, 0).read_bytes()[:2] == b"\xff\xd8"  # a JPEG, rendered now
    high_dpi = cv2.imdecode(np.frombuffer(snapshot.tile(0, 0, 0, scale=2).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.tile_path(0, 0, 0, scale=2).name == "0@2x.jpg" and high_dpi.shape == (288, 512, 3)

    # A retraining replaces the embedding arrays; the snapshot keeps its own.
    write_embedding(embedding, index, vectors * 0, -layout)
    assert np.array_equal(MapSnapshot(published, tmp_path / "sources").layout, layout)
    assert os.stat(published / "layout.bin").st_nlink == 1
    newer = publish_map(embedding, maps, map_version({"stage": "test", "n": 2}))
    (maps / ".leftover.tmp").mkdir()
    remove_old_maps(maps, keep={newer.name})
    assert sorted(p.name for p in maps.iterdir()) == [newer.name]
    assert np.array_equal(open_array(newer, "layout"), -layout)
