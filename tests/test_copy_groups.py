"""Copies made into groups (workers/pipeline/copy_groups.py): which file is the original,
what kind of copy each relation is, and which frames point to which."""
import numpy as np
import pytest

from workers.pipeline.copies import Files, Stretch
from workers.pipeline.copy_groups import CopyFiles, group_copies, save

pytestmark = pytest.mark.django_db(databases=[])

# file 0: a 10 s video (1 frame a second); file 1: a re-encoded copy of it; file 2: its 3-5 s
# cut out; file 3: an unrelated video; files 4 and 5: two photos; file 6: a compilation of
# 0-2 s of file 0 and 2 s of file 3.
SOURCES = np.repeat(np.arange(7), [10, 10, 3, 8, 1, 1, 4])
TIMES = np.r_[np.arange(10.0), np.arange(10.0), np.arange(3.0), np.arange(8.0), 0.0, 0.0, np.arange(4.0)]
SPANS = Files(SOURCES, TIMES).spans


def stretch(a, b, a_range, b_range, score=0.9):
    (a_first, _), (b_first, _) = SPANS[a], SPANS[b]
    a_rows = [a_first + int(t) for t in range(int(a_range[0]), int(a_range[1]) + 1)]
    b_rows = [b_first + int(t) for t in range(int(b_range[0]), int(b_range[1]) + 1)]
    return Stretch(a=a, b=b, a_start=a_range[0], a_stop=a_range[1], b_start=b_range[0], b_stop=b_range[1],
                   verified=len(a_rows), checked=len(a_rows), difference=0.05, score=score,
                   pairs=list(zip(a_rows, b_rows)))


STRETCHES = [
    stretch(0, 1, (0, 9), (0, 9), 0.99),
    stretch(0, 2, (3, 5), (0, 2), 0.95),
    stretch(1, 2, (3, 5), (0, 2), 0.93),
    stretch(4, 5, (0, 0), (0, 0), 0.8),
    stretch(0, 6, (0, 1), (0, 1), 0.9),
    stretch(3, 6, (5, 6), (2, 3), 0.85),
    stretch(3, 5, (0, 0), (0, 0), 0.3),  # below the threshold: no relation
]


def test_groups_keep_the_most_original_file_and_say_what_kind_each_copy_is():
    groups, relations, _ = group_copies(STRETCHES, SPANS, TIMES, threshold=0.5)
    assert [(g["representative"], g["members"]) for g in groups] == [(0, [0, 1, 3, 6, 2]), (4, [4, 5])]
    kinds = {(r["copy"], r["original"]): r["kind"] for r in relations}
    assert kinds == {(1, 0): "copy", (2, 0): "contained", (2, 1): "contained", (5, 4): "near-duplicate",
                     (6, 0): "partial", (6, 3): "partial"}
    cut = next(r for r in relations if (r["copy"], r["original"]) == (2, 0))
    assert (cut["copy_start"], cut["copy_stop"], cut["original_start"], cut["original_stop"]) == (0, 2, 3, 5)
    assert [r["score"] for r in relations] == sorted((r["score"] for r in relations), reverse=True)


def test_each_copied_frame_points_to_its_best_original_frame_and_originals_point_nowhere():
    _, _, copy_of = group_copies(STRETCHES, SPANS, TIMES, threshold=0.5)
    first = {file: span[0] for file, span in SPANS.items()}
    assert np.all(copy_of[first[0]:first[0] + 10] == -1)  # the representative
    assert list(copy_of[first[1]:first[1] + 10]) == list(range(first[0], first[0] + 10))
    assert list(copy_of[first[2]:first[2] + 3]) == [first[0] + 3, first[0] + 4, first[0] + 5]  # its best relation
    assert copy_of[first[5]] == first[4] and copy_of[first[4]] == -1
    assert list(copy_of[first[6]:first[6] + 4]) == [first[0], first[0] + 1, first[3] + 5, first[3] + 6]
    assert np.all(copy_of[first[3]:first[3] + 8] == -1)  # longer than the compilation


def test_nothing_above_the_threshold_makes_no_group():
    groups, relations, copy_of = group_copies(STRETCHES, SPANS, TIMES, threshold=0.9999)
    assert groups == [] and relations == [] and np.all(copy_of == -1)


def test_a_detection_reads_back_as_it_was_written(tmp_path):
    groups, relations, copy_of = group_copies(STRETCHES, SPANS, TIMES, threshold=0.5)
    save(tmp_path / "d", groups, relations, copy_of, {"map": "abc", "threshold": 0.5}, {"stage": "test"})
    files = CopyFiles(tmp_path / "d")
    assert files.groups == groups and files.relations == relations and files.details["threshold"] == 0.5
    assert np.array_equal(files.copy_of, copy_of)
    assert {(r["copy"], r["original"]) for r in files.relations_of(2)} == {(2, 0), (2, 1)}


def test_rows_with_copies_follow_chains_both_ways():
    from workers.pipeline.copy_groups import rows_with_copies

    copy_of = np.array([-1, 0, 1, -1, 3, -1])  # 2 copies 1, which copies 0; 4 copies 3; 5 alone
    assert rows_with_copies(copy_of, [2]).tolist() == [0, 1, 2]
    assert rows_with_copies(copy_of, [0]).tolist() == [0, 1, 2]
    assert rows_with_copies(copy_of, [3, 5]).tolist() == [3, 4, 5]


def test_cells_without_some_frames_show_only_the_others():
    from workers.pipeline.tiles import CellIndex, TileGrid, grid_levels_for

    xy = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    grid = TileGrid(grid_levels_for(len(xy)))
    everything = CellIndex.build(grid, xy)
    assert np.array_equal(CellIndex.build(grid, xy, shown=np.arange(len(xy))).rows, everything.rows)
    shown = np.flatnonzero(np.arange(len(xy)) % 3 != 0)
    some = CellIndex.build(grid, xy, shown=shown)
    assert set(some.rows.tolist()) <= set(shown.tolist())
    # a cell that showed a frame still shown shows the same frame (it was the nearest of all)
    for level in range(grid.levels + 1):
        columns, rows = grid.cells(xy[shown], level)
        before = everything.lookup(level, columns, rows)
        after = some.lookup(level, columns, rows)
        kept = np.isin(before, shown)
        assert np.array_equal(after[kept], before[kept]) and np.all(after >= 0)
