"""Cut-outs: a frame with its plain background made transparent, so that it can sit on a
scatter poster (scatter.py) without its box hiding its neighbours.

The frame's pixels are clustered by colour (k-means in CIELAB, where distances follow
what the eye sees, optionally with each pixel's position) and the background is the
cluster(s) found at the frame's edge:

  corners      every cluster holding at least BORDER_SHARE of the frame's outer ring of
               pixels (and always the one holding most): a background split by a gradient
               or a shadow is found whole, and a subject touching the edge stays.
  first-pixel  the cluster of pixel (0, 0): the plain reading, right for a flat backdrop.

Either way, a cluster whose centre is within SAME_COLOUR of a background cluster's is
background too: with more clusters than the picture has colours, k-means splits a plain,
noisy background in two, and without this its other half would stay as speckle.
Letterbox bars (black, all along the frame's edge) come out transparent with the rest.
The mask is then cleaned (an opening and a closing by a small disc, specks under
MIN_SPECK of the frame dropped) and becomes the alpha channel: 0 or 255, no feathering.

A frame that is all background (one colour, or nothing left after the cleaning) comes
out fully transparent. Deterministic: the pixels sampled and k-means's start are seeded.
"""
import os
import uuid
from pathlib import Path

import numpy as np

BACKGROUNDS = ("corners", "first-pixel")
# Four clusters: the background, the subject, and one each for the background's gradient
# or shadow and the subject's second colour. Two is too few once the background is graded
# (its far end goes with the subject); many more cut the subject into pieces, some of
# which share colour with the background.
DEFAULT_CLUSTERS = 4
CLUSTER_RANGE = (2, 16)
# How a collection's frames are cut out unless its cutouts job says otherwise.
DEFAULTS = {"clusters": DEFAULT_CLUSTERS, "background": "corners", "position": False}
# A tenth of the ring: more than a subject standing on the frame's bottom edge usually
# covers, less than any part of a background split in two by its gradient.
BORDER_SHARE = 0.10
# CIELAB distance under which two cluster centres are one colour: a few times a
# just-noticeable difference (about 2.3), less than a subject that stands out.
SAME_COLOUR = 8.0
# With use_position, the frame's longer side counts as this many CIELAB units: a
# cluster then spans a region rather than a colour all over the frame, without the
# position outweighing a clear difference of colour.
POSITION_SCALE = 40.0
SAMPLE_PIXELS = 20_000  # k-means fits on this many pixels; every pixel is then assigned
N_INIT = 2  # starts of k-means: two are enough for a few well-separated colours
MIN_SPECK = 0.001  # components of the foreground under this share of the frame are dropped


def cut_out(pixels, clusters=DEFAULT_CLUSTERS, background="corners", use_position=False, seed=0):
    """RGBA uint8 (h, w, 4) of RGB `pixels` (h, w, 3): the colours unchanged, alpha 0 on
    the background and 255 on the subject."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError(f"a cut-out needs RGB uint8 pixels (h, w, 3), not {pixels.dtype} {pixels.shape}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)} (got {background!r})")
    low, high = CLUSTER_RANGE
    if not isinstance(clusters, (int, np.integer)) or not low <= clusters <= high:
        raise ValueError(f"clusters must be a whole number from {low} to {high} (got {clusters!r})")
    labels, centres = _cluster(pixels, int(clusters), use_position, seed)
    mask = clean_mask(~np.isin(labels, background_clusters(labels, centres, background)))
    return np.dstack([pixels, mask.astype(np.uint8) * 255])


def _features(pixels, use_position):
    """(h*w, 3 or 5) float32: CIELAB (L 0-100, a and b about -100 to 100), then x, y."""
    import cv2

    h, w = pixels.shape[:2]
    lab = cv2.cvtColor(pixels.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    if not use_position:
        return lab
    scale = POSITION_SCALE / max(h, w)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) * scale
    return np.hstack([lab, xs.reshape(-1, 1), ys.reshape(-1, 1)])


def _cluster(pixels, clusters, use_position, seed):
    """(labels (h, w) int, centres (k, features)): k-means fitted on a sample of the
    pixels, then every pixel given its nearest centre. Fewer clusters than asked when
    the sample has fewer distinct colours (one colour: one cluster)."""
    from sklearn.cluster import KMeans

    h, w = pixels.shape[:2]
    features = _features(pixels, use_position)
    rng = np.random.default_rng(seed)
    sample = features if len(features) <= SAMPLE_PIXELS else \
        features[rng.choice(len(features), SAMPLE_PIXELS, replace=False)]
    rows = np.ascontiguousarray(sample).view(np.dtype((np.void, sample.itemsize * sample.shape[1])))
    k = min(clusters, len(np.unique(rows)))  # as whole rows, much faster than unique(axis=0)
    if k == 1:
        return np.zeros((h, w), np.int32), sample[:1].copy()
    model = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(sample)
    return model.predict(features).reshape(h, w), model.cluster_centers_


def border_ring(labels):
    """The labels of the frame's outer ring of pixels, each pixel once."""
    if min(labels.shape) <= 2:
        return labels.reshape(-1)
    return np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])


def background_clusters(labels, centres, background="corners"):
    """The cluster numbers that are background: those found on the border (see the
    module's docstring), then those of the same colour as one of them."""
    if background == "first-pixel":
        found = {int(labels[0, 0])}
    else:
        counts = np.bincount(border_ring(labels), minlength=len(centres))
        found = set(np.flatnonzero(counts >= BORDER_SHARE * counts.sum()).tolist()) | {int(counts.argmax())}
    colours = np.asarray(centres)[:, :3]  # the position, when used, does not make two colours differ
    near = np.linalg.norm(colours[:, None] - colours[sorted(found)][None], axis=-1).min(axis=1) < SAME_COLOUR
    return sorted(found | set(np.flatnonzero(near).tolist()))


def clean_mask(mask):
    """`mask` (h, w) bool with ragged edges and specks removed: an opening then a closing
    by a disc about 1% of the frame's shorter side (at least 3 pixels), then foreground
    components under MIN_SPECK of the frame dropped."""
    import cv2

    h, w = mask.shape
    if not mask.any():
        return mask
    side = max(3, round(min(h, w) * 0.01) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    cleaned = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disc)
    cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, disc)
    count, components, stats, _ = cv2.connectedComponentsWithStats(cleaned, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= MIN_SPECK * h * w
    keep[0] = False  # component 0 is the background
    return keep[components]


def mask_iou(a, b):
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def write_cutout(path, rgba):
    """A PNG with alpha at `path`, under a temporary name first and then renamed, so a
    crash never leaves a half-written cut-out that looks finished."""
    from workers.pipeline.images import encode_png

    path = Path(path)
    data = encode_png(rgba)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_cutout(path):
    """The RGBA uint8 (h, w, 4) pixels of a cut-out's PNG (opaque if it has no alpha)."""
    import cv2

    data = np.fromfile(str(path), np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if len(data) else None
    if pixels is None or pixels.dtype != np.uint8:
        raise ValueError(f"{path}: not an 8-bit PNG")
    if pixels.ndim == 2:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGRA)
    elif pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
