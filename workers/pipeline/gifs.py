"""Animated GIFs of quantized clips, written by Pillow.

Each frame is a P-mode image with its own palette, or, when all frames share one, a
global colour table and no local ones. Pillow's writer then stores each frame as its
difference from the one before (the changed rectangle, unchanged pixels made transparent
while the palette has a free entry) and merges a frame identical to the previous one
into it, adding the durations: a stable palette is what makes those differences small.

Durations come from the frames' real timestamps, in the GIF's centiseconds, rounded on the
clip's clock (each frame ends where the next begins), so that the GIF does not drift from
the video; the last frame lasts the median step.
"""
import os
import uuid
from pathlib import Path

import numpy as np

from workers.pipeline.palette import Quantized

MIN_CENTISECONDS = 2  # browsers show shorter GIF delays as 10 cs: never write fewer than 2


def durations_ms(times):
    """Per-frame durations in milliseconds (multiples of 10) from presentation times in seconds."""
    times = np.asarray(times, np.float64)
    if len(times) < 2:
        return [100] * len(times)
    step = float(np.median(np.diff(times)))
    ends = np.round(np.append(times, times[-1] + step) * 100)
    return [int(max(MIN_CENTISECONDS, cs)) * 10 for cs in np.diff(ends)]


def write_gif(path, quantized, times, loop=0):
    """Write `quantized` (a Quantized) to `path` as a GIF shown at `times` (seconds), looping
    `loop` times (0: for ever); written under a temporary name, then renamed into place."""
    from PIL import Image

    if len(times) != len(quantized):
        raise ValueError(f"{len(times)} times for {len(quantized)} frames")
    images = []
    for palette, indices in zip(quantized.palettes, quantized.indices):
        image = Image.fromarray(np.ascontiguousarray(indices, np.uint8), mode="P")
        image.putpalette(np.asarray(palette, np.uint8).tobytes())
        images.append(image)
    shared = quantized.shared_palette()
    options = {"palette": np.asarray(quantized.palettes[0], np.uint8).tobytes()} if shared else {}
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across hosts sharing the folder
    try:
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:], duration=durations_ms(times),
                       loop=loop, optimize=True, disposal=1, **options)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def pillow_quantized(frames, colours):
    """The reference: each frame quantized on its own by Pillow's `Image.quantize` (median
    cut, no dithering), as a Quantized."""
    from PIL import Image

    palettes, indices = [], []
    for frame in frames:
        image = Image.fromarray(np.asarray(frame, np.uint8), mode="RGB").quantize(colours, dither=Image.Dither.NONE)
        used = np.asarray(image)
        palettes.append(np.asarray(image.getpalette("RGB"), np.uint8).reshape(-1, 3)[:max(int(used.max()) + 1, 1)])
        indices.append(used)
    return Quantized(palettes=palettes, indices=indices)


def pillow_gif(path, frames, times, colours, loop=0):
    """The reference GIF: `frames` quantized per frame by Pillow (`pillow_quantized`) and
    written as `write_gif` writes ours; returns its Quantized (to measure its flicker)."""
    quantized = pillow_quantized(frames, colours)
    write_gif(path, quantized, times, loop)
    return quantized
