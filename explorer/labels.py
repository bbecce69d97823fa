"""Labels: the one home of naming frames, for the API, the pages and the command line.

A frame is (source id, frame number); its label is a FrameLabel row, so a label outlives
any re-clustering. Every change is a LabelAction (who, when, what) with a LabelChange row
per frame it changed, holding the frame's label before: `undo` puts those back. Merges and
splits of clusters are actions too (made by the cluster stage): undoing one makes the
grouping before it current again.

Frames are read and written in batches of a source's frames, so naming a cluster of
100,000 frames is a few hundred queries, not 100,000.
"""
import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from explorer.models import Collection, FrameLabel, Label, LabelAction, LabelChange, Source
from workers.pipeline.arrays import open_array

BATCH = 500
LABEL_MAX_LENGTH = 100


class LabelError(ValueError):
    """A label action that cannot be done as asked: the message says why."""


def clean_name(name):
    """A label's name, stripped; LabelError when empty, too long or with control characters."""
    name = (name or "").strip()
    if not name:
        raise LabelError("a label needs a name")
    if len(name) > LABEL_MAX_LENGTH:
        raise LabelError(f"a label's name is at most {LABEL_MAX_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise LabelError("a label's name may not hold control characters")
    return name


def actor(user):
    """(user or None, the name the history shows) of whoever does an action."""
    if user is not None and getattr(user, "is_authenticated", False):
        return user, user.get_username()
    return None, "local user"


def _by_source(frames):
    grouped = defaultdict(list)
    for source, frame in frames:
        grouped[int(source)].append(int(frame))
    return grouped


def current_labels(frames):
    """{(source, frame): label id} of those of `frames` that have a label."""
    found = {}
    for source, numbers in _by_source(frames).items():
        for start in range(0, len(numbers), BATCH):
            for frame, label in FrameLabel.objects.filter(source_id=source, frame__in=numbers[start:start + BATCH]) \
                    .values_list("frame", "label_id"):
                found[(source, frame)] = label
    return found


def _lock(collection):
    """Inside a transaction: one label action at a time per collection. Writing the
    collection's row unchanged locks it on PostgreSQL, and on SQLite takes the database's
    write lock before anything is read (explorer/jobs.py starts jobs the same way)."""
    Collection.objects.filter(pk=collection.pk).update(name=F("name"))


def apply(collection, frames, name, kind, description, user=None):
    """Give every frame of `frames` ((source, frame) pairs) the label `name`, or no label
    when `name` is None. Returns the action (its `frames`: how many changed)."""
    name = clean_name(name) if name is not None else None
    return apply_each(collection, {(int(s), int(f)): name for s, f in frames}, kind, description, user)


def apply_each(collection, wanted, kind, description, user=None):
    """Give each frame ((source, frame) -> a label's name, or None for no label) its label,
    as one action. Returns the action (its `frames`: how many changed)."""
    user, who = actor(user)
    with transaction.atomic():
        _lock(collection)
        ids = {name: Label.objects.get_or_create(collection=collection, name=name)[0].pk
               for name in set(wanted.values()) if name is not None}
        target = {key: ids.get(name) for key, name in wanted.items()}
        before = current_labels(target)
        changed = [key for key, label in target.items() if before.get(key) != label]
        only = set(ids.values())
        action = LabelAction.objects.create(collection=collection, kind=kind, user=user, who=who,
                                            label_id=only.pop() if len(only) == 1 else None,
                                            description=description, frames=len(changed))
        LabelChange.objects.bulk_create(
            (LabelChange(action=action, source_id=s, frame=f, before_id=before.get((s, f))) for s, f in changed),
            batch_size=BATCH)
        by_label = defaultdict(list)
        for key in changed:
            by_label[target[key]].append(key)
        for label, keys in by_label.items():
            _set(collection, keys, label, action)
    return action


def _set(collection, frames, label_id, action):
    """Frames take `label_id` (None: no label)."""
    for source, numbers in _by_source(frames).items():
        for start in range(0, len(numbers), BATCH):
            FrameLabel.objects.filter(source_id=source, frame__in=numbers[start:start + BATCH]).delete()
    if label_id is not None:
        FrameLabel.objects.bulk_create(
            (FrameLabel(collection=collection, source_id=s, frame=f, label_id=label_id, action=action)
             for s, f in frames), batch_size=BATCH)


def undo(collection, user=None):
    """Undo the collection's last action that is not undone yet; returns it, or None when
    there is none. A merge or split is undone only while its grouping is still current."""
    with transaction.atomic():
        _lock(collection)
        collection.refresh_from_db(fields=["clustering"])
        # A merge or split whose clustering is no longer shown (the map was clustered again
        # since) has nothing left to undo: the actions before it still do.
        edits = (LabelAction.Kind.MERGE, LabelAction.Kind.SPLIT)
        action = collection.label_actions.filter(undone_at=None).exclude(
            Q(kind__in=edits) & ~Q(clustering_after=collection.clustering_id)).first()
        if action is None:
            return None
        if action.kind in edits:
            if action.clustering_before_id is None:
                raise LabelError(f"cannot undo \"{action.description}\": the clusters it was made from are gone")
            Collection.objects.filter(pk=collection.pk).update(clustering=action.clustering_before_id)
        else:
            restore = defaultdict(list)
            for source, frame, before in action.changes.values_list("source_id", "frame", "before_id"):
                restore[before].append((source, frame))
            for before, frames in restore.items():
                _set(collection, frames, before, None)
        action.undone_at = timezone.now()
        action.save(update_fields=["undone_at"])
    return action


# --- frames of clusters and sources ---

def source_frames(source):
    """(frame numbers, times) of a source's sampled frames."""
    try:
        index = open_array(source.frames_dir, "index")
    except FileNotFoundError:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.asarray(index["frame"]), np.asarray(index["time"])


def tagger_readiness(collection):
    """({label name: labelled frames}, what is missing to train a tagger on them: empty when
    nothing is; workers/pipeline/tagger.py check_labels says how many more are needed)."""
    from django.db.models import Count

    from workers.pipeline.tagger import TaggerError, check_labels

    counts = dict(FrameLabel.objects.filter(collection=collection).values_list("label__name").annotate(
        n=Count("pk")).order_by("label__name"))
    try:
        check_labels(counts)
    except TaggerError as error:
        return counts, str(error)
    return counts, ""


def with_copies(collection, frames):
    """`frames` ((source, frame) pairs) and the frames that copy them or that they copy, by
    the collection's copies of its current map (workers/pipeline/copy_groups.py): a label
    given to one member of a group of copies goes to the others."""
    from explorer.served_copies import copies_for
    from explorer.served_maps import snapshot
    from workers.pipeline.copy_groups import rows_with_copies

    current = snapshot(collection)
    found = copies_for(collection, current.version) if current is not None else None
    if found is None:
        raise LabelError(f"collection {collection.name!r} has no copies found in its current map: look for them "
                         "first (its copies page, or manage.py duplicates)")
    rows = []
    for source, numbers in _by_source(frames).items():
        found_rows = current.rows_of(source, np.asarray(numbers))
        rows += found_rows[found_rows >= 0].tolist()
    extra = frames_of_rows(current, rows_with_copies(found.copy_of, rows)) if rows else []
    return list(dict.fromkeys(list(frames) + extra))


def frames_of_rows(snapshot, rows):
    """(source, frame) of each map row."""
    index = snapshot.index
    return list(zip(np.asarray(index["source"][rows]).tolist(), np.asarray(index["frame"][rows]).tolist()))


def row_labels(collection, snapshot):
    """The label id of every row of a map (0 where none), from the collection's FrameLabels."""
    labels = np.zeros(len(snapshot), dtype=np.int64)
    rows = defaultdict(lambda: ([], []))
    for source, frame, label in FrameLabel.objects.filter(collection=collection).values_list(
            "source_id", "frame", "label_id").iterator(chunk_size=10_000):
        rows[source][0].append(frame)
        rows[source][1].append(label)
    for source, (frames, label_ids) in rows.items():
        found = snapshot.rows_of(source, np.asarray(frames))
        labels[found[found >= 0]] = np.asarray(label_ids)[found >= 0]
    return labels


# --- import and export ---

def import_rows(collection, rows, user=None, filename="the file"):
    """Apply `rows` of (source, timestamp, label): source is the file's path or its name,
    the timestamp picks the nearest sampled frame (photos: 0). Rows naming unknown files,
    unusable times or bad labels are listed and skipped; the rest is applied as one action
    (one undo takes the file back). Returns (frames labelled, skipped: [{"line", "source",
    "timestamp", "reason"}])."""
    sources = list(collection.sources.filter(status=Source.Status.READY))
    by_path = {s.path: s for s in sources}
    by_name = defaultdict(list)
    for s in sources:
        by_name[Path(s.path).name].append(s)
    frames_of = {}
    wanted, skipped = {}, []  # (source, frame) -> label: a later row for a frame wins
    for line, name, timestamp, label in rows:
        def skip(reason):
            skipped.append({"line": line, "source": name, "timestamp": timestamp, "reason": reason})

        source = by_path.get(name)
        if source is None:
            matches = by_name.get(Path(name).name if "/" in name else name, [])
            if len(matches) > 1:
                skip(f"{len(matches)} files of the collection are called {Path(name).name}: give the path")
                continue
            source = matches[0] if matches else None
        if source is None:
            skip("no such file in the collection")
            continue
        try:
            seconds = float(timestamp)
            if not np.isfinite(seconds) or seconds < 0:
                raise ValueError
        except (TypeError, ValueError):
            skip(f"the timestamp {timestamp!r} is not a number of seconds (0 or more)")
            continue
        try:
            label = clean_name(label)
        except LabelError as error:
            skip(str(error))
            continue
        if source.pk not in frames_of:
            frames_of[source.pk] = source_frames(source)
        numbers, times = frames_of[source.pk]
        if len(numbers) == 0:
            skip("the file has no sampled frames")
            continue
        if source.duration and seconds > source.duration + 1.0:
            skip(f"the file is {source.duration:.1f} s long")
            continue
        after = int(np.searchsorted(times, seconds))  # the sampled frames are in time order
        nearest = min((i for i in (after - 1, after) if 0 <= i < len(times)), key=lambda i: abs(times[i] - seconds))
        wanted[(source.pk, int(numbers[nearest]))] = label
    if not wanted:
        return 0, skipped
    apply_each(collection, wanted, LabelAction.Kind.IMPORT,
               f"imported {len(wanted)} frame(s) from {filename}", user)
    return len(wanted), skipped


def read_table(handle, filename):
    """(line, source, timestamp, label) rows of a CSV file with the header
    source,timestamp,label, or a JSON list of such objects. LabelError when it is neither."""
    text = handle.read()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise LabelError(f"{filename} is not UTF-8 text") from None
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise LabelError(f"{filename} is not valid JSON: {error}") from None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise LabelError(f"{filename} must hold a list of {{\"source\", \"timestamp\", \"label\"}} objects")
        return [(n, str(item.get("source", "")), item.get("timestamp"), str(item.get("label") or ""))
                for n, item in enumerate(items, 1)]
    reader = csv.DictReader(io.StringIO(text))
    missing = {"source", "timestamp", "label"} - set(reader.fieldnames or ())
    if missing:
        raise LabelError(f"{filename} needs the columns source,timestamp,label (missing: {', '.join(sorted(missing))})")
    return [(reader.line_num, row["source"] or "", row["timestamp"], row["label"] or "") for row in reader]


def export_rows(collection):
    """Every labelled frame: {"source", "timestamp", "label", "source_id", "frame"}, by source and time."""
    paths = dict(collection.sources.values_list("pk", "path"))
    by_source = defaultdict(list)
    for source, frame, name in FrameLabel.objects.filter(collection=collection).values_list(
            "source_id", "frame", "label__name").iterator(chunk_size=10_000):
        by_source[source].append((frame, name))
    rows = []
    for source in sorted(by_source):
        numbers, times = source_frames(Source(pk=source, collection=collection))
        time_of = dict(zip(numbers.tolist(), times.tolist()))
        for frame, name in sorted(by_source[source]):
            rows.append({"source": paths[source], "timestamp": round(time_of.get(frame, 0.0), 6), "label": name,
                         "source_id": source, "frame": frame})
    return rows


def write_table(rows, handle, as_json):
    if as_json:
        json.dump(rows, handle, indent=1)
        return
    writer = csv.DictWriter(handle, fieldnames=["source", "timestamp", "label", "source_id", "frame"])
    writer.writeheader()
    writer.writerows(rows)
