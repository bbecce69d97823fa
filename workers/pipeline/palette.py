"""Palettes for clip GIFs: k-means (or k-medians) on each frame's colours, seeded so that
the palette of one frame carries over to the next and a still scene does not flicker.

Colour space: CIELAB (OpenCV's float conversion, D65, L 0-100). There the Euclidean
distance approximates the difference a viewer sees (CIE76 Delta E), so the centres spend
themselves where the eye tells colours apart, and "a small change" means one threshold
across dark and bright, saturated and grey. Pixels are assigned to the Lab values of the
palette's rounded RGB colours, so what a pixel is matched to is what it shows.

Seedings:
  sequential   frame 0 from k-means++ (seeded); frame i starts from frame i-1's centres,
               and centre j stays centre j: on a still scene the centres are a fixed point,
               the palette order is stable and GIF frames differ only where the scene moved.
  independent  every frame its own k-means++ (seed + frame number): the flicker reference.
  global       one palette fitted on pixels of all frames, shared by every frame.

Distances: "euclidean" is scikit-learn's KMeans (Lloyd, one init); "manhattan" is
k-medians, written here: pixels assigned by L1 distance, each centre the per-channel median
of its members (robust to a few outlying pixels), an empty cluster keeping its centre.

Each frame is fitted on the same SAMPLE pixel positions (a fixed-seed random sample): the
still parts of a scene give the same samples in every frame. Every pixel is then assigned.
A frame of fewer distinct colours than K gets as many centres as it has colours (the
palette is then shorter than K).

What is left of flicker on real video is codec noise at the borders between clusters and
centres that drift a little as things move elsewhere in the frame; `hold` (quantize_clip)
keeps both still, at a bounded cost in accuracy (HOLD_SLACK, PALETTE_SLACK).

Flicker (`flicker`) is measured in CIE76 Delta E, at the pixels where the source itself
did not change (its own change below `still_below`, default STILL_BELOW).
"""
from dataclasses import dataclass

import numpy as np

SEEDINGS = ("sequential", "independent", "global")
DISTANCES = ("euclidean", "manhattan")
MIN_COLOURS, MAX_COLOURS = 2, 256
SAMPLE = 4096  # pixels fitted per frame: a 480x270 frame's colours, to within a Delta E or two
GLOBAL_SAMPLE = 16_384  # pixels fitted for a global palette, drawn from all frames' samples
# Delta E below which a source pixel counts as unchanged: codec noise on a still scene stays
# under it, while about 2.3 is the smallest difference people notice side by side.
STILL_BELOW = 3.0
HOLD_SLACK = 3.0  # Delta E a held pixel's colour may be worse than its best (quantize_clip's `hold`)
PALETTE_SLACK = 1.5  # Delta E a palette colour must move before a held frame shows the move
COLD_ITERATIONS, WARM_ITERATIONS = 100, 30  # Lloyd iterations from k-means++, from the previous frame
_CHUNK = 1 << 21  # distance matrix entries computed at once (8 MiB of float32)


class PaletteError(ValueError):
    """Parameters or frames that cannot be quantized; the message says which and why."""


@dataclass
class Quantized:
    """A quantized clip: per frame, its palette and each pixel's index into it."""
    palettes: list  # per frame, (k, 3) uint8 RGB; k <= the colours asked for
    indices: list  # per frame, (h, w) uint8

    def __len__(self):
        return len(self.indices)

    def rgb(self, i):
        """Frame `i` as shown: (h, w, 3) uint8 RGB."""
        return self.palettes[i][self.indices[i]]

    def shared_palette(self):
        """True when every frame has the same palette (a GIF's global colour table)."""
        first = self.palettes[0]
        return all(p.shape == first.shape and np.array_equal(p, first) for p in self.palettes[1:])


def to_lab(rgb):
    """uint8 RGB (..., 3) as float32 CIELAB (..., 3)."""
    import cv2

    rgb = np.asarray(rgb)
    flat = np.ascontiguousarray(rgb.reshape(-1, 1, 3), dtype=np.float32) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(rgb.shape)


def to_rgb(lab):
    """CIELAB (k, 3) as the nearest uint8 RGB (colours outside the sRGB gamut clipped)."""
    import cv2

    lab = np.ascontiguousarray(np.reshape(lab, (-1, 1, 3)), dtype=np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB).reshape(-1, 3)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def nearest(points, centres, distance):
    """Index of the nearest centre of each point ((n, 3) and (k, 3) float arrays), by
    squared Euclidean or L1 distance, in chunks so that memory stays small for K = 256."""
    points = np.asarray(points, np.float32)
    centres = np.asarray(centres, np.float32)
    out = np.empty(len(points), np.intp)
    step = max(1, _CHUNK // max(1, len(centres) * (3 if distance == "manhattan" else 1)))
    squares = (centres ** 2).sum(axis=1)
    for at in range(0, len(points), step):
        chunk = points[at:at + step]
        if distance == "manhattan":
            d = np.abs(chunk[:, None, :] - centres[None, :, :]).sum(axis=2)
        else:  # |x|^2 is the same for every centre: leave it out
            d = squares[None, :] - 2.0 * (chunk @ centres.T)
        out[at:at + step] = d.argmin(axis=1)
    return out


def _check(colours, distance, seeding):
    if isinstance(colours, bool) or not isinstance(colours, (int, np.integer)) \
            or not MIN_COLOURS <= colours <= MAX_COLOURS:
        raise PaletteError(f"colours must be a whole number from {MIN_COLOURS} to {MAX_COLOURS}, not {colours!r}")
    if distance not in DISTANCES:
        raise PaletteError(f"distance must be one of {', '.join(DISTANCES)}, not {distance!r}")
    if seeding not in SEEDINGS:
        raise PaletteError(f"seeding must be one of {', '.join(SEEDINGS)}, not {seeding!r}")


def _rgb_frame(frame, size=None):
    """A frame as (h, w, 3) uint8; a grey (h, w) frame becomes three equal channels."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or 0 in frame.shape:
        raise PaletteError(f"a frame must be (height, width, 3) uint8 RGB, not {frame.shape} {frame.dtype}")
    if size is not None and frame.shape[:2] != size:
        raise PaletteError(f"every frame must be {size[1]}x{size[0]}, not {frame.shape[1]}x{frame.shape[0]}")
    return frame


def _sample_positions(pixels, size, seed):
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pixels, size=min(size, pixels), replace=False))


def _distinct(rgb_rows):
    packed = rgb_rows.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32)
    return len(np.unique(packed))


class _Fitter:
    """Fits centres to a sample of Lab points by the chosen distance."""

    def __init__(self, distance, seed):
        self.distance, self.seed = distance, seed

    def cold(self, lab, k, seed):
        """k centres from k-means++ (seeded), refined by Lloyd."""
        if self.distance == "euclidean":
            return self._kmeans(lab, k, "k-means++", seed, COLD_ITERATIONS)
        from sklearn.cluster import kmeans_plusplus

        start, _ = kmeans_plusplus(lab, k, random_state=seed)
        return _lloyd(lab, start, "manhattan", COLD_ITERATIONS)

    def warm(self, lab, centres, distinct):
        """The previous centres refined on this sample, in the same order. A sample of fewer
        distinct colours than centres keeps the unused centres where they were (dormant),
        ready for the frames after it."""
        if distinct < len(centres) or self.distance == "manhattan":
            return _lloyd(lab, centres, self.distance, WARM_ITERATIONS)
        return self._kmeans(lab, len(centres), centres, None, WARM_ITERATIONS)

    def grow(self, lab, centres, k, seed):
        """`centres` with more appended by k-means++ sampling (those already there keep
        their place), then refined: a frame with more colours than the ones before it."""
        rng = np.random.default_rng(seed)
        centres = np.asarray(centres, np.float64)
        while len(centres) < k:
            gaps = ((lab[:, None, :] - centres[None]) ** 2).sum(axis=2).min(axis=1)
            if gaps.sum() <= 0:
                break
            centres = np.vstack([centres, lab[rng.choice(len(lab), p=gaps / gaps.sum())]])
        return self.warm(lab, centres, len(centres))

    @staticmethod
    def _kmeans(lab, k, init, seed, iterations):
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        # tol=0: Lloyd runs until no label changes, so the centres it returns are a fixed
        # point, and the next frame of a still scene starts, and stays, exactly there.
        model = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iterations, tol=0.0, random_state=seed)
        with threadpool_limits(1, user_api="openmp"):  # a few thousand points: threads only contend
            return model.fit(lab).cluster_centers_


def _lloyd(points, centres, distance, iterations):
    """Lloyd's loop from `centres` by `distance`: means for Euclidean, per-channel medians
    (k-medians) for Manhattan; an empty cluster keeps its centre. Stops when no label changes."""
    centres = np.array(centres, np.float64)
    labels = None
    for _ in range(iterations):
        new = nearest(points, centres, distance)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        order = np.argsort(labels, kind="stable")
        members = np.split(points[order], np.cumsum(np.bincount(labels, minlength=len(centres)))[:-1])
        for j, group in enumerate(members):
            if len(group):
                centres[j] = np.median(group, axis=0) if distance == "manhattan" else group.mean(axis=0)
    return centres


def quantize_clip(frames, colours=16, distance="euclidean", seeding="sequential", palette_from=None, seed=0,
                  progress=None, hold=True):
    """Quantize `frames` (a sequence of (h, w, 3) uint8 RGB frames, all one size) to at most
    `colours` colours each; returns a Quantized. `palette_from`, an RGB image, gives the
    colours shown (see `transfer`). `progress(fraction)` is called as frames finish.
    `hold` (sequential and global seeding; independent seeding's indices mean other colours
    in every frame) keeps what a viewer would otherwise see flicker still: a palette colour
    that moved less than PALETTE_SLACK Delta E shows its previous value, and a pixel whose
    source is still keeps its previous index while that is within HOLD_SLACK of its best.
    PaletteError for invalid parameters or frames."""
    _check(colours, distance, seeding)
    if not len(frames):
        raise PaletteError("no frames to quantize")
    size = _rgb_frame(frames[0]).shape[:2]
    reference = None
    if palette_from is not None:
        reference = reference_palette(_rgb_frame(palette_from), colours, distance, seed)
        colours = len(reference[0])  # as many target clusters as reference colours
    holding = hold and seeding != "independent"
    palettes, indices, before = [], [], None
    for i, centres in enumerate(_centres(frames, size, colours, _Fitter(distance, seed), seeding, seed)):
        palette = to_rgb(centres)
        if holding and palettes and len(palettes[-1]) == len(palette):  # colours that barely moved stay put
            barely = np.linalg.norm(to_lab(palette) - to_lab(palettes[-1]), axis=1) < PALETTE_SLACK
            palette[barely] = palettes[-1][barely]
        pixels = to_lab(_rgb_frame(frames[i])).reshape(-1, 3)
        shown = to_lab(palette)
        chosen = nearest(pixels, shown, distance)
        if holding and before is not None:
            chosen = _held(pixels, shown, chosen, *before)
        before = pixels, chosen
        indices.append(chosen.astype(np.uint8).reshape(size))
        palettes.append(palette)
        if progress:
            progress((i + 1) / len(frames))
    if reference is not None:
        palettes = _transferred(*reference, indices, seeding)
    return Quantized(palettes=palettes, indices=indices)


def _centres(frames, size, colours, fitter, seeding, seed):
    """Yields each frame's centres (Lab, (k, 3)) as `seeding` says, fitted on the same
    SAMPLE pixel positions of every frame; k = `colours`, or the sample's distinct colours."""
    positions = _sample_positions(size[0] * size[1], SAMPLE, seed)
    samples = [_rgb_frame(frame, size).reshape(-1, 3)[positions] for frame in frames] if seeding == "global" else ()
    if seeding == "global":
        pooled = np.concatenate(samples)
        pooled = pooled[_sample_positions(len(pooled), GLOBAL_SAMPLE, seed)]
        centres = fitter.cold(to_lab(pooled).astype(np.float64), min(colours, _distinct(pooled)), seed)
        yield from [centres] * len(frames)
        return
    previous = None
    for i, frame in enumerate(frames):
        sample = _rgb_frame(frame, size).reshape(-1, 3)[positions]
        lab, k = to_lab(sample).astype(np.float64), min(colours, _distinct(sample))
        if seeding == "independent" or previous is None:
            previous = fitter.cold(lab, k, seed + i)
        elif k > len(previous):
            previous = fitter.grow(lab, previous, k, seed + i)
        else:
            previous = fitter.warm(lab, previous, k)
        yield previous


def _held(pixels, shown, chosen, before, chosen_before):
    """`chosen` indices, except that a pixel whose source is still (changed by less than
    STILL_BELOW Delta E since the previous frame) keeps its previous index while that
    colour is at most HOLD_SLACK Delta E worse than the best: codec noise at the border of
    two clusters no longer toggles the pixel between them."""
    still = np.linalg.norm(pixels - before, axis=1) < STILL_BELOW
    kept = np.minimum(chosen_before, len(shown) - 1)
    worse = np.linalg.norm(pixels - shown[kept], axis=1) - np.linalg.norm(pixels - shown[chosen], axis=1)
    return np.where(still & (worse <= HOLD_SLACK) & (chosen_before < len(shown)), kept, chosen)


def _transferred(reference_colours, reference_counts, indices, seeding):
    """Each frame's palette made of the reference's colours, by `transfer` on the clusters'
    pixel counts: per frame for independent seeding; for sequential and global seeding, one
    map from the counts of the whole clip (centre j is the same cluster in every frame)."""
    k = int(max(int(i.max()) for i in indices)) + 1
    counts = [np.bincount(i.ravel(), minlength=k) for i in indices]
    if seeding != "independent":
        mapping = transfer(np.sum(counts, axis=0), reference_counts)
        return [reference_colours[mapping] for _ in indices]
    return [reference_colours[transfer(c, reference_counts)] for c in counts]


REFERENCE_SIDE = 480  # pixels: a picture's colours and their shares survive this, and counting them stays quick


def fit_reference(pixels):
    """A reference picture (RGB) no larger than REFERENCE_SIDE a side, as reference_palette
    wants it: uploads and frames of any size take their colours the same way."""
    from workers.pipeline.images import fit_size, resize

    pixels = np.asarray(pixels)
    height, width = pixels.shape[:2]
    if max(width, height) <= REFERENCE_SIDE:
        return pixels
    return resize(pixels, *fit_size(width, height, REFERENCE_SIDE, REFERENCE_SIDE))


def reference_palette(pixels, k, distance="euclidean", seed=0):
    """The `k` colours of a reference image (fewer when it has fewer distinct colours) and
    how many of its pixels each stands for: (centres (k, 3) uint8 RGB, counts (k,) int),
    most frequent first."""
    _check(k, distance, SEEDINGS[0])
    image = _rgb_frame(pixels)
    flat = image.reshape(-1, 3)
    sample = flat[_sample_positions(len(flat), GLOBAL_SAMPLE, seed)]
    centres = _Fitter(distance, seed).cold(to_lab(sample).astype(np.float64), min(k, _distinct(sample)), seed)
    colours = to_rgb(centres)
    counts = np.bincount(nearest(to_lab(flat), to_lab(colours), distance), minlength=len(colours))
    order = np.argsort(-counts, kind="stable")
    return colours[order], counts[order]


def transfer(target_counts, reference_counts):
    """For each target cluster, the reference colour it shows: an optimal assignment
    (scipy's linear_sum_assignment) of the cost |target frequency - reference frequency|,
    frequencies being shares of all pixels. The most frequent target cluster takes the
    most frequent reference colour, the second the second, and so on (for this cost sorted
    matching is optimal). With more target clusters than reference colours, each reference
    colour is offered as many times as needed, its share split evenly among its offers."""
    from scipy.optimize import linear_sum_assignment

    target = np.asarray(target_counts, np.float64)
    reference = np.asarray(reference_counts, np.float64)
    target, reference = target / max(target.sum(), 1e-12), reference / max(reference.sum(), 1e-12)
    offers = -(-len(target) // len(reference))  # ceil
    columns = np.repeat(np.arange(len(reference)), offers)
    cost = np.abs(target[:, None] - (reference / offers)[columns][None, :])
    rows, chosen = linear_sum_assignment(cost)
    mapping = np.empty(len(target), np.intp)
    mapping[rows] = columns[chosen]
    return mapping


def flicker(source_frames, shown_frames, still_below=STILL_BELOW):
    """How much a quantized clip flickers where its source is still: over consecutive
    frame pairs, the mean CIE76 Delta E between the two shown frames at the pixels whose
    source changed by less than `still_below` Delta E; the mean of that over the pairs
    (pairs with no still pixel left out). `flicker(source, source)` is the source's own
    (below `still_below` by construction: codec noise). One frame, or none still: 0.0."""
    means, previous = [], None
    for source, shown in zip(source_frames, shown_frames):
        current = to_lab(_rgb_frame(source)), to_lab(_rgb_frame(shown))
        if previous is not None:
            still = np.linalg.norm(current[0] - previous[0], axis=2) < still_below
            if still.any():
                means.append(float(np.linalg.norm(current[1] - previous[1], axis=2)[still].mean()))
        previous = current
    return float(np.mean(means)) if means else 0.0
