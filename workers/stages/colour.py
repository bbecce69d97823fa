"""The colour stages: `gif` (a clip as an animated GIF, its palette chosen by k-means,
workers/pipeline/palette.py) and `cutouts` (every sampled frame cut out of its plain
background, workers/pipeline/cutouts.py, in chunks of a source's frames, many to a task); and the
map's hover previews, small GIFs made on first request by a task of their own (not a job:
they are a cache of the map version, like its tiles)."""
import logging

import numpy as np
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from explorer.models import Gif, Source, WorkItem
from workers import lifecycle
from workers.celery import app
from workers.pieces import FanOut, add_chunks, job_progress
from workers.pipeline.sampling import MediaError
from workers.pipeline.previews import mark_failed, preview_name, preview_path, release_claim
from workers.stages import PREVIEW_TASK, Report
from workers.tasks import job_task

log = logging.getLogger(__name__)

CUTOUTS = "cutouts"  # this module's fanned-out stage (WorkItem.stage of its pieces)
CUTOUT_CHUNK = 256  # frames per work item
PREVIEW = {"fps": 8.0, "width": 192, "colours": 32}  # a hover preview: small, smooth enough, quick to make


# --- gif ---

def make_gif(job):
    """Decode the clip, quantize its frames, write the GIF and measure its flicker next to
    the source's own. A clip or palette reference that cannot be read fails the job with
    the file and the reason."""
    from workers.pipeline.clip_frames import clip_frames
    from workers.pipeline.gifs import write_gif
    from workers.pipeline.palette import PaletteError, flicker, quantize_clip

    gif = job.gifs.select_related("source").get()
    params, source = gif.params, gif.source
    lifecycle.update(job.pk, message=f"decoding {source.path} {gif.start:g}-{gif.stop:g} s")
    try:
        times, frames = clip_frames(source.path, gif.start, gif.stop, params["fps"], params["width"],
                                    settings.MAX_IMAGE_PIXELS)
        reference = _palette_reference(gif)
        lifecycle.update(job.pk, message=f"quantizing {len(frames)} frame(s) to {params['colours']} colours "
                                         f"({params['seeding']}, {params['distance']})")
        quantized = quantize_clip(frames, colours=params["colours"], distance=params["distance"],
                                  seeding=params["seeding"], palette_from=reference,
                                  progress=job_progress(job.pk, span=0.9))
    except (MediaError, PaletteError) as exc:
        lifecycle.fail(job.pk, str(exc))
        return
    gif.file_path.parent.mkdir(parents=True, exist_ok=True)
    write_gif(gif.file_path, quantized, times)
    shown = (quantized.rgb(i) for i in range(len(frames)))  # one frame at a time: flicker only walks them
    height, width = frames[0].shape[:2]
    Gif.objects.filter(pk=gif.pk).update(frames=len(frames), width=width, height=height,
                                         file_size=gif.file_path.stat().st_size, flicker=flicker(frames, shown),
                                         source_flicker=flicker(frames, frames))


def _palette_reference(gif):
    """The picture whose colours the GIF takes, as RGB pixels, or None; MediaError when it
    cannot be read."""
    from workers.pipeline.palette import fit_reference
    from workers.pipeline.sampling import full_resolution_frames, read_photo

    reference = gif.params.get("palette_from")
    if not reference:
        return None
    if reference.get("image"):
        return fit_reference(np.asarray(read_photo(gif.palette_image_path, settings.MAX_IMAGE_PIXELS)))
    other = gif.collection.sources.filter(pk=reference["source"]).first()
    if other is None:
        raise MediaError(f"palette_from: source {reference['source']} is no longer in the collection")
    for _, pixels in full_resolution_frames(other.path, [reference["time"]], settings.MAX_IMAGE_PIXELS):
        return fit_reference(pixels)
    raise MediaError(f"palette_from: {other.path} has no frame at {reference['time']:g} s")


def gif_report(job):
    gif = job.gifs.first()
    if gif and gif.ready:
        return Report((f"GIF {gif.width}x{gif.height}, {gif.frames} frame(s), {gif.file_size / 1024:.0f} KiB, "
                       f"flicker {gif.flicker:.2f} (source {gif.source_flicker:.2f})",))
    return Report(("no GIF",), fatal="no GIF was made")


# --- cutouts ---

def cutout_settings(collection):
    """How the collection's latest cut-outs job cut its frames out ({"clusters", "background",
    "position"}), else the defaults: a scatter poster draws the cut-outs the collection has."""
    from explorer.models import Job
    from workers.pipeline.cutouts import DEFAULTS

    latest = collection.jobs.filter(kind=Job.Kind.CUTOUTS, status__in=(Job.Status.SUCCEEDED, Job.Status.PARTIAL)
                                    ).order_by("-pk").first()
    return {**DEFAULTS, **(latest.params if latest else {})}


def cutout_folder(source_dir, made_with):
    """Where a source's cut-outs made with `made_with` (cutout_settings) from its frames as
    they are now are kept, one PNG per frame of its frame store: the folder names how the
    frames were sampled (a source sampled again gets new cut-outs; the old ones are removed
    here) and the settings."""
    import hashlib
    import json
    import shutil

    from workers.pipeline.arrays import read_manifest

    sampled = (read_manifest(source_dir, "frames") or {}).get("produced_by")
    made_from = hashlib.sha256(json.dumps(sampled, sort_keys=True).encode()).hexdigest()[:12]
    root = source_dir / "cutouts"
    for earlier in (root.iterdir() if root.exists() else ()):
        if earlier.name != made_from:
            shutil.rmtree(earlier, ignore_errors=True)
    name = f"{made_with['background']}-{made_with['clusters']}" + ("-position" if made_with["position"] else "")
    return root / made_from / name


def cutout_pixels(folder, index, pixels, made_with, again=False):
    """The cut-out (RGBA) of frame `index` of a source's frame store, kept in `folder`
    (cutout_folder): read from its file when made already (unless `again`), else made from
    `pixels` (RGB) with `made_with` (cutout_settings) and kept."""
    from workers.pipeline.cutouts import cut_out, read_cutout, write_cutout

    path = folder / f"{index}.png"
    if path.exists() and not again:
        try:
            return read_cutout(path)
        except (OSError, ValueError):
            log.warning("cut-out %s does not read: made again", path)
    rgba = cut_out(pixels, clusters=made_with["clusters"], background=made_with["background"],
                   use_position=made_with["position"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_cutout(path, rgba)
    return rgba


def prepare_cutouts(job):
    """A work item per chunk of frames of every sampled source."""
    for source in job.collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).order_by("pk"):
        add_chunks(job, CUTOUTS, source, CUTOUT_CHUNK)


# A message carries chunks up to CUTOUT_CHUNK frames together (a folder of photos: a chunk each).
CUTTING = FanOut("workers.tasks.cutouts", WorkItem, lambda: WorkItem.objects.filter(stage=CUTOUTS),
                 job_link="job", done_label="cut-out chunk(s) done",
                 work=F("stop") - F("start"), budget=lambda: CUTOUT_CHUNK)


@job_task(CUTTING.task, pieces=CUTTING)
def cutouts(self, job_id, item_ids):
    """Cut the message's chunks of frames out of their backgrounds, one chunk after the other."""
    CUTTING.run(self.request.id, job_id, item_ids, _cut_out_chunk)


def _cut_out_chunk(job_id, item):
    from workers.pipeline.arrays import open_array

    from workers.pipeline.cutouts import DEFAULTS

    made_with = {**DEFAULTS, **item.job.params}
    frames = open_array(item.source.frames_dir, "frames")
    folder = cutout_folder(item.source.frames_dir, made_with)
    write_progress = CUTTING.progress_writer(job_id, item.pk)
    for index in range(item.start, item.stop):
        cutout_pixels(folder, index, frames[index], made_with, again=True)  # the job asked for them afresh
        write_progress((index + 1 - item.start) / (item.stop - item.start))
    WorkItem.objects.filter(pk=item.pk).update(status=WorkItem.Status.DONE, progress=1.0, heartbeat=timezone.now())


def cutouts_report(job):
    items = job.items.filter(stage=CUTOUTS)
    failed = items.filter(status=WorkItem.Status.FAILED).count()
    frames = sum(item.stop - item.start for item in items.filter(status=WorkItem.Status.DONE))
    return Report((f"{frames} frame(s) cut out",) + ((f"{failed} chunk(s) failed",) if failed else ()),
                  failed=failed, fatal="" if frames else "no frame was cut out")


# --- hover previews ---

@app.task(name=PREVIEW_TASK, ignore_result=True)
def make_preview(collection_id, version, source_id, window):
    """The hover preview of window `window` of a source (workers/pipeline/previews.py): the
    source decoded at PREVIEW's rate and width, or, where it no longer decodes, its stored
    frames of that stretch. Writes the GIF, or a `.failed` file beside it, saying why, so
    that the page stops asking; an error that may pass (the database, the disk) leaves no
    trace but the log, and the page asks again."""
    from explorer.models import Collection
    from workers.pipeline.gifs import write_gif
    from workers.pipeline.palette import PaletteError, quantize_clip
    from workers.pipeline.previews import MAX_ATTEMPTS, begin_attempt, preview_window

    collection = Collection.objects.get(pk=collection_id)
    maps_dir, name = collection.maps_dir, preview_name(source_id, window)
    target = preview_path(maps_dir, version, name)
    try:
        if target.exists() or not (maps_dir / version).exists():
            return  # made by a duplicate of this task, or the map is gone
        if begin_attempt(maps_dir, version, name) > MAX_ATTEMPTS:
            mark_failed(maps_dir, version, name, f"its worker was killed {MAX_ATTEMPTS} times making it")
            return
        _, start, stop = preview_window(window * settings.PREVIEW_SECONDS, settings.PREVIEW_SECONDS)
        times, frames = _preview_frames(collection, version, source_id, start, stop)
        write_gif(target, quantize_clip(frames, colours=PREVIEW["colours"]), times)
    except (MediaError, PaletteError, ValueError) as exc:
        log.warning("no hover preview %s of map %s: %s", name, version, exc)
        mark_failed(maps_dir, version, name, str(exc))
    finally:
        release_claim(maps_dir, version, name)


def _preview_frames(collection, version, source_id, start, stop):
    """(times, frames) of a source from `start` to `stop` seconds (cut at its end): decoded
    from the file, or from the frame store where the file no longer decodes."""
    from workers.pipeline.clip_frames import clip_frames
    from workers.pipeline.images import fit_size, resize
    from workers.pipeline.map_versions import MapSnapshot

    source = Source.objects.filter(pk=source_id).first()
    try:
        if source is None:
            raise MediaError(f"source {source_id} was removed from the collection")
        stop = min(stop, source.known_duration)
        return clip_frames(source.path, start, stop, PREVIEW["fps"], PREVIEW["width"], settings.MAX_IMAGE_PIXELS)
    except MediaError as exc:
        log.info("preview of source %s %g-%g s from the frame store: %s", source_id, start, stop, exc)
    snapshot = MapSnapshot(collection.maps_dir / version, collection.sources_dir)
    first, last = snapshot.spans.rows(source_id) or (0, 0)
    times = np.asarray(snapshot.index["time"][first:last])
    rows = [first + i for i in np.flatnonzero((times >= start) & (times < stop))
            if snapshot.frame_pixels(first + i) is not None]
    if not rows:
        raise MediaError(f"source {source_id}: its file does not decode and its frames are gone from the frame store")
    frames = [snapshot.frame_pixels(row) for row in rows]
    size = fit_size(frames[0].shape[1], frames[0].shape[0], PREVIEW["width"], PREVIEW["width"])
    return np.asarray([float(snapshot.index["time"][row]) for row in rows]), [resize(f, *size) for f in frames]
