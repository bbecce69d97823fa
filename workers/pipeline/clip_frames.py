"""A stretch of a source decoded for a GIF: its frames from `start` to `stop` seconds at a
frame rate, scaled to a width, as displayed.

Apart from sampling.py because a clip is decoded into memory, not into a frame store, and
is seeked to rather than decoded from the start; it reuses sampling.py's opening, display
geometry and frame selection, so a clip's frames are those the sampler would keep at that
rate (the first frame at or after each 1/fps from the clip's start).
"""
from pathlib import Path

import numpy as np

from workers.pipeline.files import media_kind
from workers.pipeline.images import resize
from workers.pipeline.sampling import (
    MediaError, SamplingParams, _display_geometry, _duration, _FrameSelector, _reason, _video_stream, read_photo,
)

EDGE = 1e-3  # seconds of slack at the video's ends (timestamps are rounded to the time base)


def clip_frames(path, start, stop, fps, width, max_image_pixels=89_478_485):
    """(times, frames) of `path` from `start` to `stop` seconds (times from the video's
    start, float64 (n,); frames (n, h, w, 3) uint8 RGB) at `fps` frames a second, `width`
    pixels wide and as high as the display aspect gives (rounded to even). A photo is its
    one frame at time 0. MediaError naming the file: missing, not media, a clip outside the
    video, or no frame decoded. ValueError for a rate or width that is not positive."""
    path = Path(path)
    if fps <= 0 or width < 2:
        raise ValueError(f"fps must be positive and width at least 2, not {fps} and {width}")
    if media_kind(path) == "photo":
        pixels = np.asarray(read_photo(path, max_image_pixels))
        return np.zeros(1), resize(pixels, width, _even_height(width, pixels.shape[1], pixels.shape[0]))[None]
    if not stop > start >= 0:
        raise MediaError(f"{path}: the clip {start:g}-{stop:g} s is empty or starts before 0 s")
    return _decode(path, float(start), float(stop), fps, int(width))


def _even_height(width, display_width, display_height):
    return max(2, 2 * round(width * display_height / display_width / 2))


def _decode(path, start, stop, fps, width):
    import av
    from av.video.reformatter import VideoReformatter

    with _video_stream(path, "not a video or photo that can be decoded") as (container, stream, offset):
        duration = _duration(container, stream)
        if duration is not None and (start >= duration - EDGE or stop > duration + EDGE):
            where = "is past the end of" if start >= duration - EDGE else "ends after the end of"
            raise MediaError(f"the clip {start:g}-{stop:g} s {where} {path} ({duration:.1f} s)")
        time_base, sar = float(stream.time_base), stream.sample_aspect_ratio
        selector = _FrameSelector(SamplingParams(fps=fps))  # on the clip's clock: frames every 1/fps from `start`
        reformatter, times, frames = VideoReformatter(), [], []
        try:
            if start > 0:
                container.seek(int(round((start + offset) / time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None or frame.is_corrupt:
                    continue
                time = frame.pts * time_base - offset
                if time >= stop - EDGE:
                    break
                if time < start - EDGE or not selector.keep(0, max(time - start, 0.0)):
                    continue
                frames.append(_scaled(frame, sar, width, reformatter))
                times.append(time)
        except av.FFmpegError as exc:
            if not frames:
                raise MediaError(f"{path}: no frame of {start:g}-{stop:g} s decodes ({_reason(exc)})") from None
    if not frames:
        raise MediaError(f"{path}: no frame between {start:g} and {stop:g} s")
    return np.asarray(times, np.float64), np.stack(frames)


def _scaled(frame, sar, width, reformatter):
    """A frame `width` pixels wide as displayed: scaled (area) while converting to RGB, then turned."""
    display, rotation = _display_geometry(frame, sar)
    size = (width, _even_height(width, *display))
    decode = size[::-1] if rotation % 2 else size
    pixels = reformatter.reformat(frame, width=decode[0], height=decode[1], format="rgb24",
                                  interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(np.rot90(pixels, k=rotation)) if rotation else pixels
