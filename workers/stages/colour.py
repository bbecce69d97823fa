"""The colour stages: `gif` (a clip as an animated GIF, its palette chosen by k-means,
workers/pipeline/palette.py) and `cutouts` (every sampled frame cut out of its plain
background, workers/pipeline/cutouts.py, one task per chunk of a source's frames); and the
map's hover previews, small GIFs made on first request by a task of their own (not a job:
they are a cache of the map version, like its tiles)."""
import logging

import numpy as np
from django.conf import settings
from django.utils import timezone

from explorer.models import Gif, Source, WorkItem
from workers import lifecycle
from workers.celery import app
from workers.pieces import FanOut, add_chunks, job_progress
from workers.pipeline.sampling import MediaError
from workers.pipeline.previews import mark_failed, preview_path, release_claim
from workers.stages import PREVIEW_TASK, Report
from workers.tasks import job_task

log = logging.getLogger(__name__)

CUTOUTS = "cutouts"  # this module's fanned-out stage (WorkItem.stage of its pieces)
CUTOUT_CHUNK = 256  # frames per task
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
        times, frames = clip_frames(source.path, gif.start, gif.stop, params["fps"], params["width"])
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
    shown = [quantized.rgb(i) for i in range(len(frames))]
    height, width = frames[0].shape[:2]
    Gif.objects.filter(pk=gif.pk).update(frames=len(frames), width=width, height=height,
                                         file_size=gif.file_path.stat().st_size, flicker=flicker(frames, shown),
                                         source_flicker=flicker(frames, frames))


def _palette_reference(gif):
    """The picture whose colours the GIF takes, as RGB pixels, or None."""
    from workers.pipeline.images import fit_size, resize
    from workers.pipeline.sampling import full_resolution_frames, read_photo

    reference = gif.params.get("palette_from")
    if not reference:
        return None
    if reference.get("image"):
        pixels = np.asarray(read_photo(gif.palette_image_path, settings.MAX_IMAGE_PIXELS))
    else:
        other = Source.objects.get(pk=reference["source"])
        _, pixels = next(full_resolution_frames(other.path, [reference["time"]], settings.MAX_IMAGE_PIXELS))
    height, width = pixels.shape[:2]
    return resize(pixels, *fit_size(width, height, 480, 480)) if max(width, height) > 480 else pixels


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
    from explorer.jobs import CUTOUT_DEFAULTS
    from explorer.models import Job

    latest = collection.jobs.filter(kind=Job.Kind.CUTOUTS, status=Job.Status.SUCCEEDED).order_by("-pk").first()
    return {**CUTOUT_DEFAULTS, **(latest.params if latest else {})}


def cutout_pixels(source_dir, index, pixels, settings, again=False):
    """The cut-out (RGBA) of frame `index` of a source's frame store, made with `settings`
    (cutout_settings): read from its file when made already (unless `again`), else made
    from `pixels` (RGB) and kept."""
    from workers.pipeline.cutouts import cut_out, read_cutout, write_cutout

    made_with = f"{settings['background']}-{settings['clusters']}" + ("-position" if settings["position"] else "")
    path = source_dir / "cutouts" / made_with / f"{index}.png"
    if path.exists() and not again:
        try:
            return read_cutout(path)
        except (OSError, ValueError):
            log.warning("cut-out %s does not read: made again", path)
    rgba = cut_out(pixels, clusters=settings["clusters"], background=settings["background"],
                   use_position=settings["position"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_cutout(path, rgba)
    return rgba


def prepare_cutouts(job):
    """A work item per chunk of frames of every sampled source."""
    for source in job.collection.sources.filter(status=Source.Status.READY, frame_count__gt=0).order_by("pk"):
        add_chunks(job, CUTOUTS, source, CUTOUT_CHUNK)


CUTTING = FanOut("workers.tasks.cutouts", WorkItem, lambda: WorkItem.objects.filter(stage=CUTOUTS),
                 job_link="job", done_label="cut-out chunk(s) done")


@job_task(CUTTING.task, pieces=CUTTING)
def cutouts(self, job_id, item_id):
    """Cut one chunk of a source's frames out of their backgrounds."""
    CUTTING.run(self.request.id, job_id, item_id, _cut_out_chunk)


def _cut_out_chunk(job_id, item):
    from workers.pipeline.arrays import open_array

    from explorer.jobs import CUTOUT_DEFAULTS

    made_with = {**CUTOUT_DEFAULTS, **item.job.params}
    frames = open_array(item.source.frames_dir, "frames")
    write_progress = CUTTING.progress_writer(job_id, item.pk)
    for index in range(item.start, item.stop):
        # made again: the frame store may have been sampled again since
        cutout_pixels(item.source.frames_dir, index, frames[index], made_with, again=True)
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
def make_preview(collection_id, version, first_row, stop_row):
    """The hover preview of map rows [first_row, stop_row) (one clip): the source decoded at
    PREVIEW's rate and width, or, where it no longer decodes, the clip's stored frames.
    Writes the GIF, or a `.failed` file beside it so that the page stops asking."""
    from explorer.models import Collection
    from workers.pipeline.map_versions import MapSnapshot
    from workers.pipeline.clip_frames import clip_frames
    from workers.pipeline.gifs import write_gif
    from workers.pipeline.palette import quantize_clip

    collection = Collection.objects.get(pk=collection_id)
    target = preview_path(collection.maps_dir, version, first_row)
    try:
        snapshot = MapSnapshot(collection.maps_dir / version, collection.sources_dir)
        source = Source.objects.filter(pk=int(snapshot.index["source"][first_row])).first()
        start, stop = (float(snapshot.index["time"][row]) for row in (first_row, stop_row - 1))
        try:
            if source is None:
                raise MediaError(f"source {int(snapshot.index['source'][first_row])} was removed")
            times, frames = clip_frames(source.path, start, max(stop, start + 1 / PREVIEW["fps"]), PREVIEW["fps"],
                                        PREVIEW["width"])
        except MediaError as exc:
            log.info("preview of rows %s-%s from the frame store: %s", first_row, stop_row, exc)
            times, frames = _stored_clip(snapshot, first_row, stop_row)
        write_gif(target, quantize_clip(frames, colours=PREVIEW["colours"]), times)
    except Exception as exc:  # noqa: BLE001 - a preview is a nicety: say why and stop asking
        log.warning("no hover preview for rows %s-%s of map %s: %s", first_row, stop_row, version, exc)
        mark_failed(target, f"{type(exc).__name__}: {exc}")
    finally:
        release_claim(target)


def _stored_clip(snapshot, first_row, stop_row):
    from workers.pipeline.images import fit_size, resize

    rows = [row for row in range(first_row, stop_row) if snapshot.frame_pixels(row) is not None]
    if not rows:
        raise MediaError("its frames are gone from the frame store")
    frames = [snapshot.frame_pixels(row) for row in rows]
    height, width = frames[0].shape[:2]
    size = fit_size(width, height, PREVIEW["width"], PREVIEW["width"])
    return np.asarray([float(snapshot.index["time"][row]) for row in rows]), [resize(f, *size) for f in frames]
