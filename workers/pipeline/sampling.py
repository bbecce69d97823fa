"""Stage 1, sample: decode a video (or read a photo) into a per-source frame store.

A source's folder gets two arrays (see arrays.py):
  frames  (N, H, W, 3) uint8  RGB frames scaled to fit width x height
  index   (N,) [('frame', int64), ('time', float64)]  decoded frame number, seconds from start
and `sample.json`, written last, with what was decoded and any warning.

Decoding uses FFmpeg's libraries through PyAV, frame by frame in presentation
order, so every kept frame is exact (no inexact seeking), variable frame rates get
their real timestamps, and the display matrix of phone videos is applied.
"""
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workers.pipeline.arrays import (
    ArrayWriter, is_current, open_array, read_manifest, remove_stale_temporaries, write_json_atomic,
)
from workers.pipeline.files import NotRegularFile, media_kind, open_regular
from workers.pipeline.images import fit_size, letterbox_photo

INDEX_DTYPE = np.dtype([("frame", "<i8"), ("time", "<f8")])
MAX_FPS = 240  # no video has more frames a second: bounds decoding that `until` stops
SUMMARY = "sample"


class MediaError(Exception):
    """A file that cannot be sampled; the message names the file and the problem."""


class PastTheEnd(MediaError):
    """A time asked for after a video's last frame."""


class ImageTooLarge(MediaError):
    """A photo of more pixels than allowed (possibly a decompression bomb)."""


@dataclass(frozen=True)
class SamplingParams:
    width: int = 534
    height: int = 300
    every: int = 20  # keep one decoded frame in `every`...
    fps: float | None = None  # ...or, when set, this many frames per second of video

    def __post_init__(self):
        if self.width < 1 or self.height < 1:
            raise ValueError("frame width and height must be positive")
        if self.every < 1:
            raise ValueError("every must be at least 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("fps must be positive")

    def as_dict(self):
        return asdict(self)


@dataclass
class SampleResult:
    kind: str
    frames: int
    width: int  # of the stored frames
    height: int
    duration: float | None = None  # seconds, as the container states it
    fps: float | None = None  # average frame rate
    source_width: int | None = None  # as displayed (after rotation)
    source_height: int | None = None
    warning: str = ""  # set when only part of the file decoded
    reused: bool = False  # True when the stored frames were already current


def sample_source(path, out_dir, params, checksum, progress=None, max_image_pixels=89_478_485):
    """Sample one file into `out_dir`; returns a SampleResult.

    Idempotent: when `out_dir` already holds frames made from the same checksum
    and parameters, returns at once with `reused=True`.
    """
    path, out_dir = Path(path), Path(out_dir)
    produced_by = {"stage": "sample", "checksum": checksum, "params": params.as_dict()}
    if is_current(out_dir, "frames", produced_by) and is_current(out_dir, "index", produced_by):
        summary = read_manifest(out_dir, SUMMARY)
        if summary and summary.get("produced_by") == produced_by:
            return SampleResult(**{**summary["result"], "reused": True})

    with open_source(path) as handle:
        size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    if out_dir.is_dir():
        remove_stale_temporaries(out_dir)
    kind = media_kind(path) or "video"  # an unknown extension named explicitly: let FFmpeg try
    if kind == "photo":
        result = _sample_photo(path, out_dir, params, produced_by, max_image_pixels)
    else:
        result = _sample_video(path, out_dir, params, produced_by, progress)
    write_json_atomic(out_dir / f"{SUMMARY}.json", {"produced_by": produced_by, "result": asdict(result)})
    if progress:
        progress(1.0)
    return result


@contextmanager
def open_source(path):
    """A source file opened for reading; MediaError naming the file and the problem when it
    cannot be read or is not a regular file (a named pipe would block its reader for good).
    The decoders read from this handle, never from the path, so what was checked is what
    they read."""
    try:
        handle = open_regular(path)
    except NotRegularFile as exc:
        raise MediaError(f"{path}: {exc.reason}") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read the file ({exc.strerror})") from None
    with handle:
        yield handle


def read_photo(path, max_image_pixels):
    """A photo as an RGB Pillow image, upright (EXIF orientation applied); MediaError when
    it is not readable or larger than `max_image_pixels`."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = max_image_pixels
    try:
        with warnings.catch_warnings():
            # Pillow only warns between the limit and twice the limit; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_source(path) as handle, Image.open(handle) as image:
                return ImageOps.exif_transpose(image).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"{path}: image is larger than the limit of {max_image_pixels:,} pixels "
            "(possible decompression bomb; raise MAX_IMAGE_PIXELS to allow it)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises all three for damaged files
        raise MediaError(f"{path}: not a readable image ({exc})") from None


def _sample_photo(path, out_dir, params, produced_by, max_image_pixels):
    image = read_photo(path, max_image_pixels)
    source_size = image.size
    letterboxed = letterbox_photo(image, params.width, params.height)
    with ArrayWriter(out_dir, "frames", (params.height, params.width, 3), np.uint8, produced_by) as frames, \
            ArrayWriter(out_dir, "index", (), INDEX_DTYPE, produced_by) as index:
        frames.append(letterboxed[None])
        index.append(np.array([(0, 0.0)], dtype=INDEX_DTYPE))
    return SampleResult(kind="photo", frames=1, width=params.width, height=params.height,
                        source_width=source_size[0], source_height=source_size[1])


@contextmanager
def _video_stream(path, cannot_open):
    """The open container, its first video stream (with threaded decoding) and the
    stream's start time in seconds; MediaError "`path`: `cannot_open` (why)" otherwise."""
    import av

    with open_source(path) as handle:
        try:
            container = av.open(handle, metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: {cannot_open} ({_reason(exc)})") from None
        with container:
            if not container.streams.video:
                raise MediaError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
            yield container, stream, (float(stream.start_time * stream.time_base)
                                      if stream.start_time is not None else 0.0)


def _sample_video(path, out_dir, params, produced_by, progress, until=None):
    """Sample a video's frames into `out_dir`; with `until`, stop decoding past that second."""
    import av

    with _video_stream(path, "not a video or photo that can be decoded") as (container, stream, start):
        duration = _duration(container, stream)
        rate = float(stream.average_rate) if stream.average_rate else None
        sar = stream.sample_aspect_ratio  # non-square pixels (anamorphic video)
        time_base = float(stream.time_base)
        selector = _FrameSelector(params)
        state = {"writers": None, "decoded": 0, "corrupt": 0, "last_time": None, "error": None, "gaps": []}
        # A jump in time this long between decoded frames means frames were lost.
        gap = max(0.5, 5 / rate) if rate else 1.0
        try:
            for frame in container.decode(stream):
                number = state["decoded"]
                state["decoded"] += 1
                # Float arithmetic here: Fraction-based frame.time costs more than decoding some frames.
                time = (frame.pts * time_base - start if frame.pts is not None
                        else _frame_time_without_pts(number, rate))
                if state["last_time"] is not None and time - state["last_time"] > gap:
                    state["gaps"].append((state["last_time"], time))
                state["last_time"] = time
                if until is not None and (time >= until or number >= until * MAX_FPS):
                    break  # the second asked for, or as many frames as it could take (timestamps may lie)
                if frame.is_corrupt:
                    state["corrupt"] += 1
                    continue
                if not selector.keep(number, time):
                    continue
                if state["writers"] is None:
                    state["writers"] = _open_video_writers(frame, sar, out_dir, params, produced_by)
                writers = state["writers"]
                writers["frames"].append(_to_rgb(frame, writers)[None])
                writers["index"].append(np.array([(number, time)], dtype=INDEX_DTYPE))
                if progress and duration:
                    progress(min(0.999, time / duration))
        except av.FFmpegError as exc:
            state["error"] = exc  # keep what decoded so far; say what did not
        except BaseException:
            _abort(state["writers"])
            raise

    writers = state["writers"]
    if writers is None:
        reason = f" ({_reason(state['error'])})" if state["error"] else ""
        raise MediaError(f"{path}: no frame could be decoded{reason}")
    writers["frames"].commit()
    writers["index"].commit()
    return SampleResult(
        kind="video", frames=writers["frames"].rows, width=writers["size"][0], height=writers["size"][1],
        duration=duration, fps=rate, source_width=writers["display"][0], source_height=writers["display"][1],
        warning=_decode_warning(state, duration),
    )


class _FrameSelector:
    """Which decoded frames to keep: one in `every`, or the first at or after each 1/fps."""

    def __init__(self, params):
        self.every, self.fps = params.every, params.fps
        self.next_time = 0.0

    def keep(self, number, time):
        if self.fps is None:
            return number % self.every == 0
        if time + 1e-9 < self.next_time:
            return False
        self.next_time = (math.floor(time * self.fps + 1e-9) + 1) / self.fps
        return True


def _display_geometry(frame, sar):
    """(width, height) of a decoded frame as displayed (pixel aspect and rotation applied),
    and its rotation in quarter turns counter-clockwise."""
    rotation = round((frame.rotation or 0) / 90) % 4
    display = (round(frame.width * (float(sar) if sar else 1.0)), frame.height)
    return (display[::-1] if rotation % 2 else display), rotation


def _open_video_writers(frame, sar, out_dir, params, produced_by):
    display, rotation = _display_geometry(frame, sar)
    size = fit_size(*display, params.width, params.height)
    decode_size = size[::-1] if rotation % 2 else size
    from av.video.reformatter import VideoReformatter

    return {
        # One scaler for the whole video: frame.reformat() would set up a new one per frame.
        "reformatter": VideoReformatter(),
        "frames": ArrayWriter(out_dir, "frames", (size[1], size[0], 3), np.uint8, produced_by),
        "index": ArrayWriter(out_dir, "index", (), INDEX_DTYPE, produced_by),
        "size": size, "decode_size": decode_size, "display": display, "rotation": rotation,
    }


def _to_rgb(frame, writers):
    width, height = writers["decode_size"]
    pixels = writers["reformatter"].reformat(frame, width=width, height=height, format="rgb24",
                                             interpolation="AREA").to_ndarray()
    if writers["rotation"]:
        pixels = np.rot90(pixels, k=writers["rotation"])
    return pixels


def _frame_time_without_pts(number, rate):
    return number / rate if rate else float(number)


def _duration(container, stream):
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _decode_warning(state, duration):
    notes = []
    if state["error"] is not None:
        notes.append(f"decoding stopped at {state['last_time'] or 0:.2f} s: {_reason(state['error'])}")
    elif duration and state["last_time"] is not None and state["last_time"] < 0.9 * duration - 0.5:
        notes.append(f"only {state['last_time']:.2f} s of its {duration:.2f} s decoded (truncated file?)")
    if state["corrupt"]:
        notes.append(f"{state['corrupt']} corrupt frame(s) skipped")
    # Gaps are only damage when the decoder saw some: variable-rate video may pause on purpose.
    if state["gaps"] and (state["corrupt"] or state["error"] is not None):
        spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in state["gaps"][:5])
        notes.append(f"no frames decoded between {spans} (damaged data)")
    return "; ".join(notes)


def _reason(exc):
    return getattr(exc, "strerror", None) or str(exc)


def _abort(writers):
    if writers:
        writers["frames"].abort()
        writers["index"].abort()


def full_resolution_frames(path, times, max_image_pixels=89_478_485):
    """The source's own frames at the given times (seconds from its start, as `index`
    records them), at full resolution, as displayed (rotation and pixel aspect applied):
    yields (time, RGB array) in ascending time. A video is read by seeking to the key
    frame before each time and decoding forward to the exact frame; a photo is read once.
    Raises MediaError when the file is gone or no longer decodes."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: the file is no longer there")
    targets = sorted(set(float(t) for t in times))
    if media_kind(path) == "photo":
        pixels = np.asarray(read_photo(path, max_image_pixels))
        for time in targets:
            yield time, pixels
        return
    yield from _video_frames_at(path, targets)


def _video_frames_at(path, targets, read_ahead=2.0):
    import av

    with _video_stream(path, "no longer decodes") as (container, stream, start):
        time_base = float(stream.time_base)
        sar = stream.sample_aspect_ratio
        decoded, last_time = None, None
        try:
            for target in targets:
                if decoded is None or last_time is None or target < last_time or target - last_time > read_ahead:
                    try:
                        container.seek(int(round((target + start) / time_base)), stream=stream, backward=True)
                    except av.FFmpegError:  # a format that cannot seek (some GIFs): from the start
                        container.seek(0)
                    decoded = container.decode(stream)
                for frame in decoded:
                    if frame.pts is None:
                        continue
                    last_time = frame.pts * time_base - start
                    if last_time >= target - 1e-4:
                        yield target, _display_rgb(frame, sar)
                        break
                else:
                    raise PastTheEnd(f"{path}: no frame at {target:.3f} s (the file ends before it)")
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: no longer decodes ({_reason(exc)})") from None


def _display_rgb(frame, sar):
    """A decoded frame at full resolution, as it is meant to be seen."""
    display, rotation = _display_geometry(frame, sar)
    width, height = display[::-1] if rotation % 2 else display
    pixels = frame.to_ndarray(format="rgb24", width=width, height=height)
    return np.rot90(pixels, k=rotation) if rotation else pixels


def sample_upload(path, work_dir, params, max_image_pixels, max_seconds):
    """A file sent for prediction, as frames the way an ingest would sample them: a photo is
    its letterboxed frame; a video gives a frame a second (`params.fps` is ignored) of its
    first `max_seconds`, through `work_dir` (the caller deletes it). Returns (kind, frames,
    times). MediaError (naming `path`) when it is neither."""
    kind = media_kind(path)
    if kind != "video":
        try:
            return "photo", letterbox_photo(read_photo(path, max_image_pixels), params.width, params.height)[None], \
                np.zeros(1)
        except MediaError as error:
            if kind == "photo" or isinstance(error, ImageTooLarge):
                raise
    every_second = SamplingParams(width=params.width, height=params.height, fps=1.0)
    _sample_video(Path(path), Path(work_dir), every_second, {"stage": "upload"}, None, until=max_seconds)
    times = np.asarray(open_array(work_dir, "index")["time"])
    return "video", np.asarray(open_array(work_dir, "frames")), times
