"""Scatter posters: the frames' cut-outs (cutouts.py) drawn at their exact map coordinates,
instead of one frame per cell of a grid (posters.py).

The window, its rotation, the image's size in pixels, the validation of the parameters
and the saving of the canvas are the grid poster's (PosterSpec, save_canvas); only where
the frames go and how they are drawn differ:

- Each cut-out is drawn in a box of one cell's size (the spec's columns x rows set the
  canvas and the sprites' size, as for a grid), centred on its frame's map point.
- Frames are taken greedily, nearest the window's centre first (ties by map row), and a
  frame is left out when the boxes already placed would hide more than `overlap` of its
  own box. The order is fixed by the coordinates alone, so the same map gives the same
  poster, and the frame the poster is centred on is always shown. A box placed earlier is
  drawn above the later ones, so what the check measured is what the poster hides: no
  box is covered by more than `overlap` of its area.
- Rendering keeps memory bounded as render_poster does: sprites go to a scratch file as
  they arrive, then the canvas is composited in horizontal bands, each from the sprites
  that cross it, into a raw file that libvips streams into the format (with alpha on a
  transparent background).

Boxes are in float pixels (x right, y down); a box reaching past the canvas's edge is cut.
"""
import math
import os
from pathlib import Path

import numpy as np

from workers.pipeline.images import letterbox
from workers.pipeline.posters import background_colour, inside_window, save_canvas

BAND_BYTES = 64 * 2**20  # the canvas band composited at a time (float32 RGBA)
# Sprites a poster draws at most, per cell of its grid: with overlap near 1 every frame in
# the window would be drawn, and each is a cut-out to make and a box of pixels to keep, so
# the work and the scratch file grow with the map instead of the poster. The frames nearest
# the window's centre come first.
MAX_SPRITES_PER_CELL = 4


def box_size(spec):
    """(width, height) in pixels of a cut-out's box: one cell of the spec's grid."""
    width, height = spec.pixel_size
    return width / spec.columns, height / spec.rows


def map_to_pixels(spec, xy):
    """(n, 2) float pixel positions (x right, y down from the top left) of map points."""
    width, height = spec.pixel_size
    along, up = spec.window_coordinates(xy).T
    return np.stack([(along / spec.window_width + 0.5) * width, (0.5 - up / spec.window_height) * height], axis=-1)


def place_scatter(spec, xy):
    """[(map row, pixel x, pixel y)] of the frames shown, in the order they were placed
    (the first drawn on top), at most MAX_SPRITES_PER_CELL per cell of the spec's grid;
    x, y are the centre of the frame's box. Frames outside the
    window, or at non-finite coordinates, are left out: a caller leaves out a frame whose
    cut-out is empty (all background) by giving it NaN, so it takes no room."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    along, up = spec.window_coordinates(xy).T
    rows = np.flatnonzero(inside_window(spec, xy))
    rows = rows[np.lexsort((rows, np.hypot(along[rows], up[rows])))]
    centres = map_to_pixels(spec, xy[rows])
    box_w, box_h = box_size(spec)
    most = MAX_SPRITES_PER_CELL * spec.columns * spec.rows
    if spec.overlap >= 1:
        return [(int(row), float(x), float(y)) for row, (x, y) in zip(rows[:most], centres[:most])]
    limit = spec.overlap * box_w * box_h
    buckets = {}  # buckets of one box's size: a box meets only those of the 3 x 3 around its own
    placed = []
    for row, (x, y) in zip(rows.tolist(), centres.tolist()):
        i, j = math.floor(x / box_w), math.floor(y / box_h)
        near = [(px, py) for di in (-1, 0, 1) for dj in (-1, 0, 1) for px, py in buckets.get((i + di, j + dj), ())
                if abs(px - x) < box_w and abs(py - y) < box_h]
        if near and _too_hidden(x, y, box_w, box_h, near, limit):
            continue
        buckets.setdefault((i, j), []).append((x, y))
        placed.append((row, x, y))
        if len(placed) == most:
            break
    return placed


def _too_hidden(x, y, box_w, box_h, others, limit):
    """Whether the union of the same-sized boxes centred at `others` covers more than
    `limit` of the area of the box centred at (x, y): exact, the box cut along every edge."""
    others = np.asarray(others)
    # Each other box cut to this one: (n, 4) left, top, right, bottom.
    cut = np.stack([np.maximum(others[:, 0], x) - box_w / 2, np.maximum(others[:, 1], y) - box_h / 2,
                    np.minimum(others[:, 0], x) + box_w / 2, np.minimum(others[:, 1], y) + box_h / 2], axis=1)
    largest = float(((cut[:, 2] - cut[:, 0]) * (cut[:, 3] - cut[:, 1])).max())
    if largest > limit or len(cut) == 1:  # the union is at least its largest part
        return largest > limit
    return _union_area(cut) > limit


def _union_area(rects):
    """The area of the union of rectangles (n, 4): left, top, right, bottom."""
    xs, ys = np.unique(rects[:, [0, 2]]), np.unique(rects[:, [1, 3]])
    mid_x, mid_y = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    covered = ((rects[:, 0, None, None] <= mid_x) & (mid_x <= rects[:, 2, None, None])
               & (rects[:, 1, None, None] <= mid_y[:, None]) & (mid_y[:, None] <= rects[:, 3, None, None])).any(0)
    return float((covered * np.outer(np.diff(ys), np.diff(xs))).sum())


def sprite_size(spec):
    """(width, height) in whole pixels of the sprites: a box rounded, at least 1 x 1."""
    box_w, box_h = box_size(spec)
    return max(1, round(box_w)), max(1, round(box_h))


def _sprite(rgba, width, height):
    """A cut-out fitted and centred in a transparent box, alpha-premultiplied: scaling
    then never bleeds the colour under alpha 0 into the edges, and compositing is a sum."""
    rgba = np.asarray(rgba, dtype=np.uint8)
    if rgba.shape[-1] == 3:
        rgba = np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])
    alpha = rgba[..., 3:].astype(np.uint16)
    premultiplied = np.dstack([((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8), rgba[..., 3]])
    boxed = letterbox(premultiplied, width, height, (0, 0, 0, 0))
    return np.minimum(boxed, boxed[..., 3:])  # cubic scaling may overshoot: colour never above alpha


def render_scatter(spec, placements, fetch, out_path, work_dir, name="scatter", progress=None):
    """Render a scatter poster of `placements` (place_scatter's) to `out_path`.
    `fetch(items)` gets [(placement index, map row)] and yields (placement index, RGBA
    or RGB pixels, or None) in any order; a None is left out. Scratch files are
    `work_dir/name.*`, replaced by a second attempt. Returns (width, height, sprites drawn)."""
    report = progress or (lambda fraction: None)
    width, height = spec.pixel_size
    sprite_w, sprite_h = sprite_size(spec)
    sprite_bytes = sprite_w * sprite_h * 4
    colour = background_colour(spec.background)
    bands = 3 if colour else 4
    lefts = np.array([math.floor(x - sprite_w / 2 + 0.5) for _, x, _ in placements], dtype=np.int64)
    tops = np.array([math.floor(y - sprite_h / 2 + 0.5) for _, _, y in placements], dtype=np.int64)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    sprites_file, canvas_file = work_dir / f"{name}.sprites.raw", work_dir / f"{name}.canvas.raw"
    drawn = np.zeros(len(placements), dtype=bool)
    wanted = [(i, int(row)) for i, (row, _, _) in enumerate(placements)]
    try:
        with open(sprites_file, "wb") as sprites:
            for done, (i, rgba) in enumerate(fetch(wanted), 1):
                if rgba is not None:
                    os.pwrite(sprites.fileno(), _sprite(rgba, sprite_w, sprite_h).tobytes(), i * sprite_bytes)
                    drawn[i] = True
                report(0.8 * done / max(len(wanted), 1))
        band_height = max(1, min(height, BAND_BYTES // (width * 16)))
        crossing = _crossing(np.flatnonzero(drawn), tops, sprite_h, band_height, height)
        with open(sprites_file, "rb") as sprites, open(canvas_file, "wb") as canvas:
            for band, top in enumerate(range(0, height, band_height)):
                rows = min(band_height, height - top)
                pixels = np.zeros((rows, width, 4), np.float32)
                if colour:
                    pixels[:] = (*colour, 255)
                for i in sorted(crossing.get(band, ()), reverse=True):  # placed first, drawn last: on top
                    data = os.pread(sprites.fileno(), sprite_bytes, i * sprite_bytes)
                    _over(pixels, np.frombuffer(data, np.uint8).reshape(sprite_h, sprite_w, 4), lefts[i], tops[i] - top)
                canvas.write(_straight(pixels, bands).tobytes())
                report(0.8 + 0.1 * (top + rows) / height)
        sprites_file.unlink()
        save_canvas(canvas_file, width, height, bands, spec, out_path, work_dir)
        report(1.0)
    finally:
        sprites_file.unlink(missing_ok=True)
        canvas_file.unlink(missing_ok=True)
    return width, height, int(drawn.sum())


def _crossing(indices, tops, sprite_h, band_height, height):
    """{band number: [placement index]} of the sprites that cross each band."""
    crossing = {}
    for i in indices.tolist():
        first, last = max(0, tops[i]) // band_height, (min(height, tops[i] + sprite_h) - 1) // band_height
        for band in range(first, last + 1):
            crossing.setdefault(band, []).append(i)
    return crossing


def _over(band, sprite, left, top):
    """Composite a premultiplied sprite over the premultiplied float `band`, its top left
    at (left, top) of the band; the parts outside the band are cut."""
    rows, columns = band.shape[:2]
    y0, y1, x0, x1 = max(0, top), min(rows, top + sprite.shape[0]), max(0, left), min(columns, left + sprite.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    part = sprite[y0 - top:y1 - top, x0 - left:x1 - left].astype(np.float32)
    region = band[y0:y1, x0:x1]
    region *= 1 - part[..., 3:] / 255
    region += part


def _straight(band, bands):
    """The premultiplied float band as uint8 RGB (an opaque background) or straight RGBA."""
    if bands == 3:
        return np.clip(np.rint(band[..., :3]), 0, 255).astype(np.uint8)
    alpha = band[..., 3:]
    with np.errstate(invalid="ignore", divide="ignore"):
        colour = np.where(alpha > 0, band[..., :3] * 255 / alpha, 0)
    return np.clip(np.rint(np.concatenate([colour, alpha], axis=-1)), 0, 255).astype(np.uint8)
