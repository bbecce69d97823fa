"""Copies found (copies.py Stretches) made into groups of files, and kept on disk for the web.

Every stretch scored at or above the threshold is a relation between two files; relations
join files into groups. Of two related files the more original one is the longer, then the
one with more sampled frames, then the one ingested first (the lower id): the group's
representative is its most original member, and in each relation the other file is the
copy. Each relation has a kind:
  - "near-duplicate": two photos (or one-frame files) showing the same picture;
  - "copy": the two stretches cover (nearly) the whole of both files;
  - "contained": the copy is whole inside the original, from original_start to original_stop;
  - "partial": a stretch of each (a compilation of clips from several sources).

A detection's folder holds `duplicates.json` (groups, relations, exact copies) and
`copy_of`: for each row of the map it was made from, the row of the more original frame it
copies (or -1), which is how the map hides copies and says what a frame is a copy of.
Written once, whole or not at all (arrays.py), never changed.
"""
import json
from pathlib import Path

import numpy as np

from workers.pipeline.arrays import ArrayWriter, open_array, write_json_atomic

WHOLE = 0.8  # a stretch covering this share of a file's sampled time stands for the whole file


def originality(spans, times):
    """{file: sort key}: lower is more original (longer sampled time, more frames, lower id);
    the stage passes its own (longer, more pixels, ingested first)."""
    return {file: (-_duration(times[first:stop]), -(stop - first), file) for file, (first, stop) in spans.items()}


def _duration(times):
    """A file's sampled time, one sampling step counted for its last frame (0 for one frame)."""
    if len(times) < 2:
        return 0.0
    return float(times[-1] - times[0] + np.median(np.diff(times)))


def group_copies(stretches, spans, times, threshold, rank=None):
    """(groups, relations, copy_of) from Stretches over files with row `spans` and frame
    `times`. groups: [{"id", "representative", "members": [files, most original first],
    "score"}], largest first; relations: [{"group", "copy", "original", "kind", "score",
    "copy_row", "original_row", "copy_start", "copy_stop", "original_start", "original_stop",
    "verified", "checked", "difference"}], best first; copy_of: (n rows,) int64. `rank` ({file: key}, lower is more
    original) overrides `originality`, say with what the files' own sizes tell."""
    rank = rank or originality(spans, times)
    # a stretch no frame pair of which showed the same picture is never a copy, whatever the threshold
    kept = sorted((s for s in stretches if s.verified and s.score >= threshold), key=lambda s: -s.score)
    parent = {}

    def root(file):
        while parent.get(file, file) != file:
            file = parent[file]
        return file

    for stretch in kept:
        ends = sorted((root(stretch.a), root(stretch.b)), key=rank.get)
        if ends[0] != ends[1]:
            parent[ends[1]] = ends[0]
    members = {}
    for file in {f for s in kept for f in (s.a, s.b)}:
        members.setdefault(root(file), []).append(file)
    best = {}
    for stretch in kept:  # best first: the first of each group is its score
        best.setdefault(root(stretch.a), stretch.score)
    ordered = sorted(members.items(), key=lambda item: (-len(item[1]), min(rank[f] for f in item[1])))
    number_of = {}
    groups = []
    for number, (top, files) in enumerate(ordered):
        files.sort(key=rank.get)
        number_of.update((file, number) for file in files)
        groups.append({"id": number, "representative": files[0], "members": files, "score": round(best[top], 4)})
    copy_of = np.full(len(times), -1, dtype=np.int64)
    copy_score = np.zeros(len(times), dtype=np.float32)
    relations = []
    for stretch in kept:
        relation = _relation(stretch, rank, spans, times)
        relation["group"] = number_of[stretch.a]
        relations.append(relation)
        copy_side = 0 if relation["copy"] == stretch.a else 1
        for pair in stretch.pairs:
            row, original = pair[copy_side], pair[1 - copy_side]
            if stretch.score > copy_score[row]:
                copy_of[row], copy_score[row] = original, stretch.score
    return groups, relations, copy_of


def _relation(stretch, rank, spans, times):
    a_is_copy = rank[stretch.a] > rank[stretch.b]
    copy, original = (stretch.a, stretch.b) if a_is_copy else (stretch.b, stretch.a)
    copy_range = (stretch.a_start, stretch.a_stop) if a_is_copy else (stretch.b_start, stretch.b_stop)
    original_range = (stretch.b_start, stretch.b_stop) if a_is_copy else (stretch.a_start, stretch.a_stop)
    copy_whole = _covers(copy_range, spans[copy], times)
    original_whole = _covers(original_range, spans[original], times)
    one_frame = spans[copy][1] - spans[copy][0] == 1 and spans[original][1] - spans[original][0] == 1
    kind = ("near-duplicate" if one_frame else "copy" if copy_whole and original_whole
            else "contained" if copy_whole else "partial")
    middle = stretch.pairs[len(stretch.pairs) // 2] if stretch.pairs else (None, None)
    return {"copy": copy, "original": original, "kind": kind, "score": round(stretch.score, 4),
            # a frame of the copy and the original's frame it shows, for a look side by side
            "copy_row": middle[0 if a_is_copy else 1], "original_row": middle[1 if a_is_copy else 0],
            # an offset refined between sampled frames can put a start a moment before 0
            "copy_start": round(max(copy_range[0], 0.0), 3), "copy_stop": round(max(copy_range[1], 0.0), 3),
            "original_start": round(max(original_range[0], 0.0), 3),
            "original_stop": round(max(original_range[1], 0.0), 3),
            "verified": stretch.verified, "checked": stretch.checked, "difference": round(stretch.difference, 4)}


def _covers(time_range, span, times):
    """Whether a stretch covers (nearly) the whole of a file."""
    file_times = times[span[0]:span[1]]
    sampled = _duration(file_times)
    step = float(np.median(np.diff(file_times))) if len(file_times) > 1 else 0.0
    return sampled == 0.0 or (time_range[1] - time_range[0] + step) >= WHOLE * sampled


def rows_with_copies(copy_of, rows):
    """`rows` and every row that shows the same thing through copies: their originals, the
    originals' originals, and all the rows that copy any of those (sorted, unique)."""
    copy_of = np.asarray(copy_of, dtype=np.int64)
    roots = np.arange(len(copy_of))
    pointing = copy_of >= 0
    roots[pointing] = copy_of[pointing]
    for _ in range(64):  # each step halves the chains (a copy of a copy of...); they are short
        following = roots[roots]
        if np.array_equal(following, roots):
            break
        roots = following
    return np.flatnonzero(np.isin(roots, roots[np.asarray(rows, dtype=np.int64)]))


def save(directory, groups, relations, copy_of, details, produced_by):
    """Write a detection: `details` says how it was made (map, threshold, settings), and
    `produced_by` goes in the array's manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with ArrayWriter(directory, "copy_of", (), np.int64, produced_by) as out:
        out.append(np.asarray(copy_of, dtype=np.int64))
    write_json_atomic(directory / "duplicates.json", {"groups": groups, "relations": relations, "details": details})


class CopyFiles:
    """A saved detection, read-only."""

    def __init__(self, directory):
        self.directory = Path(directory)
        with open(self.directory / "duplicates.json", encoding="utf-8") as handle:
            meta = json.load(handle)
        self.groups, self.relations, self.details = meta["groups"], meta["relations"], meta["details"]
        self.copy_of = open_array(self.directory, "copy_of")
        self._group_of = {file: group["id"] for group in self.groups for file in group["members"]}

    def relations_of(self, file):
        return [r for r in self.relations if file in (r["copy"], r["original"])]

    def group_of(self, file):
        """The id of the group a file is in, or None."""
        return self._group_of.get(file)

    def relation(self, copy, original):
        """The best relation saying `copy` copies `original`, or None (relations are best first)."""
        return next((r for r in self.relations if r["copy"] == copy and r["original"] == original), None)
