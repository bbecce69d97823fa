"""The map's hover previews as files: a small GIF per stretch of PREVIEW_SECONDS of a video
(window k covers k*S to (k+1)*S seconds, so every frame of a stretch shares one preview and
the preview always holds the frame), kept in its map version's folder and removed with it;
made once by a task (workers/stages/colour.py make_preview).

The web process asks here whether one is ready and claims the right to ask for it: the
claim is the exclusive create of a file under `previews/pending/`, so a thousand pointers
resting on one clip send one task, and at most MAX_PENDING previews of a map are waiting
for a worker at once, however fast someone sweeps the map. A claim whose task was lost
goes stale and is taken again; a task that found its worker killed under it twice gives up.
"""
import math
import os
import time

STALE_CLAIM_SECONDS = 120  # a claim whose task has not written the file by then was lost
MAX_PENDING = 8  # previews of one map version waiting for a worker at once
MAX_ATTEMPTS = 2  # a preview whose worker died this often (a file that crashes the decoder) is given up


def preview_window(time_seconds, seconds):
    """(window, start, stop): the stretch of `seconds` of a video that holds this moment."""
    window = max(0, math.floor(time_seconds / seconds))
    return window, window * seconds, (window + 1) * seconds


def preview_name(source, window):
    return f"{source}-{window}"


def preview_path(maps_dir, version, name):
    return maps_dir / version / "previews" / f"{name}.gif"


def _pending(maps_dir, version, name=None):
    folder = maps_dir / version / "previews" / "pending"
    return folder / name if name else folder


def _fresh(path):
    try:
        return time.time() - path.stat().st_mtime < STALE_CLAIM_SECONDS
    except FileNotFoundError:
        return False


def preview_state(maps_dir, version, name):
    """"ready", "failed" (it cannot be made: say so, do not ask again), "pending" (a task is
    making it) or "missing"."""
    target = preview_path(maps_dir, version, name)
    if target.exists():
        return "ready"
    if target.with_suffix(".failed").exists():
        return "failed"
    return "pending" if _fresh(_pending(maps_dir, version, name)) else "missing"


def claim_preview(maps_dir, version, name):
    """"claimed" for the one caller that may now ask for this preview to be made, "busy"
    when MAX_PENDING others are waiting already (ask again later), "taken" when another
    caller has just claimed it."""
    folder = _pending(maps_dir, version)
    folder.mkdir(parents=True, exist_ok=True)
    waiting = [path for path in folder.iterdir() if path.name != name]
    if sum(_fresh(path) for path in waiting) >= MAX_PENDING:
        return "busy"
    claim = folder / name
    if claim.exists() and not _fresh(claim):
        claim.unlink(missing_ok=True)  # a lost task's: taken again
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return "claimed"
    except FileExistsError:
        return "taken"


def begin_attempt(maps_dir, version, name):
    """Counts an attempt at making the preview in its claim; returns the attempts so far,
    this one included (the claim is refreshed, so it does not go stale while it is made)."""
    claim = _pending(maps_dir, version, name)
    try:
        attempts = int(claim.read_text() or 0) + 1
    except (FileNotFoundError, ValueError):
        attempts = 1
    claim.parent.mkdir(parents=True, exist_ok=True)
    claim.write_text(str(attempts))
    return attempts


def mark_failed(maps_dir, version, name, reason):
    """Record that the preview cannot be made, and why (unless its map is gone already)."""
    try:
        preview_path(maps_dir, version, name).with_suffix(".failed").write_text(reason + "\n")
    except FileNotFoundError:
        pass


def release_claim(maps_dir, version, name):
    _pending(maps_dir, version, name).unlink(missing_ok=True)
