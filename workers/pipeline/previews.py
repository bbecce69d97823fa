"""The map's hover previews as files: a small GIF per clip, kept in its map version's folder
(and removed with it), made once by a task (workers/stages/colour.py make_preview). The web
process asks here whether one is ready and claims the right to ask for it, so that a
thousand pointers resting on one frame send one task."""
import os
import time

STALE_CLAIM_SECONDS = 120  # a claim whose task has not written the file by then was lost


def preview_path(maps_dir, version, first_row):
    """The GIF of the clip whose first map row is `first_row`."""
    return maps_dir / version / "previews" / f"{first_row}.gif"


def preview_state(maps_dir, version, first_row):
    """"ready", "failed" (it cannot be made: say so, do not ask again), "pending" (a task is
    making it) or "missing"."""
    target = preview_path(maps_dir, version, first_row)
    if target.exists():
        return "ready"
    if target.with_suffix(".failed").exists():
        return "failed"
    try:
        claimed = time.time() - target.with_suffix(".pending").stat().st_mtime < STALE_CLAIM_SECONDS
    except FileNotFoundError:
        claimed = False
    return "pending" if claimed else "missing"


def claim_preview(maps_dir, version, first_row):
    """True for the one caller that may ask for this preview to be made: the exclusive
    create of its `.pending` file. A stale claim (its task was lost) is taken over."""
    pending = preview_path(maps_dir, version, first_row).with_suffix(".pending")
    pending.parent.mkdir(parents=True, exist_ok=True)
    if preview_state(maps_dir, version, first_row) == "missing":
        pending.unlink(missing_ok=True)
    try:
        os.close(os.open(pending, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def mark_failed(target, reason):
    """Record that the preview `target` cannot be made, and why."""
    target.with_suffix(".failed").write_text(reason + "\n")


def release_claim(target):
    target.with_suffix(".pending").unlink(missing_ok=True)
