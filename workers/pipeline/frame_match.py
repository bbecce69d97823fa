"""Whether two frames show the same picture, up to re-encoding, resizing, a crop, a colour
shift or a small overlay: the frame-level check of copy detection (workers/pipeline/copies.py).

Xception's global features say two frames look alike, not that one is a copy of the other:
frames of one fixed camera a few seconds apart score higher than a re-encoded copy at a low
JPEG quality. So a candidate pair found through those features is checked on its pixels,
the usual way of near-duplicate detection: ORB keypoints matched across the two frames, a
similarity transform (scale, rotation, shift) fitted to the matches by RANSAC, and the two
frames compared where they overlap once aligned by it. The comparison normalises brightness
and contrast, and is made on blocks of about 8 pixels, each matched within one block of its
place, so compression noise, resampling and the motion of a moment between two sampled
frames do not count, while a different gesture, an object that moved further or another
scene does.

The measures (inliers, difference, overlap) say whether two frames are the same picture
(same_picture) and the same instant (an_instant); whether two files are copies is the copy
score's to weigh (copies.py). A Comparer compares a pair of frames the ways a collection asks
for: plainly, mirrored, and at the exact moment decoded from the video (MomentPoints).
"""
from dataclasses import dataclass

import numpy as np

KEYPOINTS = 500  # ORB keypoints a frame: enough for a 534x300 frame, cheap to match
RATIO = 0.8  # Lowe's ratio test: a match must be clearly better than the second best
RANSAC_PIXELS = 3.0  # a keypoint within this of where the transform puts it is an inlier
MIN_MATCHES = 6  # fewer good matches cannot fit a transform worth checking
BLOCKS = (64, 36)  # the grid the aligned frames are compared on (about 8 x 8 pixels a block)
DIFFERENCE_QUANTILE = 0.99  # a difference covering 1% of the overlap counts (a person who moved)
BAR_LEVEL = 12  # rows and columns darker than this at every pixel are letterbox bars
# Comparison limits for "the same picture".
MIN_INLIERS = 20
MAX_DIFFERENCE = 0.5  # frames of videos, sampled a moment apart: things moved a little
MAX_SINGLE_DIFFERENCE = 0.3  # the same instant (photos' copies measured up to 0.1, look-alikes from 0.34)
MIN_OVERLAP = 0.5
PHASE_SLACK = 0.04  # seconds (a frame at 25 fps): a partner this near the aligned time is that moment


@dataclass(frozen=True)
class FramePoints:
    """What a frame is compared by: its ORB keypoints and its grey picture."""
    points: np.ndarray  # (n, 2) float32 keypoint positions, in pixels
    descriptors: np.ndarray  # (n, 32) uint8 ORB descriptors (n may be 0)
    grey: np.ndarray  # (h, w) uint8
    content: tuple  # (x0, y0, x1, y1): the picture inside its letterbox bars


@dataclass(frozen=True)
class Comparison:
    """How well frame b, aligned onto frame a, agrees with it."""
    inliers: int  # keypoint matches the fitted transform explains
    difference: float  # the DIFFERENCE_QUANTILE of the blocks' normalised grey difference (0: same picture)
    overlap: float  # the share of the smaller picture that the other covers once aligned
    transform: np.ndarray | None  # 2x3, b's pixels to a's; None when no transform fitted


NO_MATCH = Comparison(inliers=0, difference=float("inf"), overlap=0.0, transform=None)  # nothing to align by


def frame_points(rgb, mirrored=False):
    """The keypoints of an RGB frame (h, w, 3) uint8; `mirrored` describes its mirror image.
    None (a frame whose store is gone) has none, and so matches nothing."""
    import cv2

    if rgb is None:
        return FramePoints(points=np.zeros((0, 2), np.float32), descriptors=np.zeros((0, 32), np.uint8),
                           grey=np.zeros((1, 1), np.uint8), content=(0, 0, 1, 1))
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if mirrored:
        grey = np.ascontiguousarray(grey[:, ::-1])
    orb = cv2.ORB_create(KEYPOINTS, fastThreshold=5)
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return FramePoints(points=points, descriptors=descriptors if descriptors is not None
                       else np.zeros((0, 32), np.uint8), grey=grey, content=_content_box(grey))


def compare(a, b):
    """Comparison of FramePoints b aligned onto a."""
    import cv2

    if len(a.points) < MIN_MATCHES or len(b.points) < MIN_MATCHES:
        return NO_MATCH
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(b.descriptors, a.descriptors, k=2)
    good = [first for first, *rest in pairs if rest and first.distance < RATIO * rest[0].distance]
    if len(good) < MIN_MATCHES:
        return NO_MATCH
    from_b = b.points[[m.queryIdx for m in good]]
    to_a = a.points[[m.trainIdx for m in good]]
    transform, inliers = cv2.estimateAffinePartial2D(from_b, to_a, method=cv2.RANSAC,
                                                     ransacReprojThreshold=RANSAC_PIXELS)
    if transform is None:
        return NO_MATCH
    difference, overlap = _aligned_difference(a, b, transform)
    return Comparison(inliers=int(inliers.sum()), difference=difference, overlap=overlap, transform=transform)


def _aligned_difference(a, b, transform):
    """(difference, overlap) of b warped onto a by `transform`."""
    import cv2

    height, width = a.grey.shape
    a_grey, b_grey = a.grey.astype(np.float32), b.grey.astype(np.float32)
    inside_b = _box_mask(b.grey.shape, b.content)
    warped = cv2.warpAffine(b_grey, transform, (width, height), flags=cv2.INTER_AREA)
    covered = cv2.warpAffine(inside_b, transform, (width, height), flags=cv2.INTER_AREA) > 0.99
    both = covered & (_box_mask(a.grey.shape, a.content) > 0)
    smaller = min(_area(a.content), _area(b.content) * abs(np.linalg.det(transform[:, :2])))
    overlap = float(both.sum() / max(smaller, 1.0))
    blocks_mask = cv2.resize(both.astype(np.float32), BLOCKS, interpolation=cv2.INTER_AREA) > 0.99
    if blocks_mask.sum() < 0.1 * blocks_mask.size:
        return float("inf"), overlap
    here = cv2.resize(a_grey * both, BLOCKS, interpolation=cv2.INTER_AREA)
    there = cv2.resize(warped * both, BLOCKS, interpolation=cv2.INTER_AREA)
    here = (here - here[blocks_mask].mean()) / (here[blocks_mask].std() + 1.0)
    there = (there - there[blocks_mask].mean()) / (there[blocks_mask].std() + 1.0)
    # Each block is matched within one block of where it should be, both ways: two frames of
    # a copy sampled a moment apart differ by a few pixels where things move, not by a block.
    difference = np.maximum(_nearby_difference(here, there, blocks_mask), _nearby_difference(there, here, blocks_mask))
    return float(np.quantile(difference[blocks_mask], DIFFERENCE_QUANTILE)), min(overlap, 1.0)


def _nearby_difference(here, there, valid):
    """For each block of `here`, its least absolute difference from the blocks of `there`
    at most one block away (blocks outside `valid` never match)."""
    padded = np.pad(np.where(valid, there, np.inf), 1, constant_values=np.inf)
    rows, columns = here.shape
    return np.min([np.abs(here - padded[1 + dy:1 + dy + rows, 1 + dx:1 + dx + columns])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def _content_box(grey):
    """(x0, y0, x1, y1): the frame without the letterbox bars around it."""
    columns = np.flatnonzero(grey.max(axis=0) > BAR_LEVEL)
    rows = np.flatnonzero(grey.max(axis=1) > BAR_LEVEL)
    if not len(columns) or not len(rows):
        return (0, 0, grey.shape[1], grey.shape[0])
    return (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)


def _box_mask(shape, box):
    mask = np.zeros(shape, dtype=np.float32)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1.0
    return mask


def _area(box):
    x0, y0, x1, y1 = box
    return float((x1 - x0) * (y1 - y0))


@dataclass(frozen=True)
class Comparer:
    """Compares two frames (map rows): `points_of(row)` gives a frame's FramePoints; with
    `mirrored_points_of` (those of its mirror image), a pair that is not the same picture
    is tried again with the second frame mirrored. With `exact_points_of(file, seconds)`
    (the FramePoints of a file's own frame at that time, decoded from it, or None), a pair
    that shows the same scene but not the same instant can be compared again at the exact
    moment: two files are rarely sampled at the same instants, and where things move fast
    (or only a person moves before a fixed camera) frames half a sampling step apart differ."""
    points_of: object
    mirrored_points_of: object = None
    exact_points_of: object = None

    def __call__(self, row_a, row_b):
        plain = compare(self.points_of(row_a), self.points_of(row_b))
        if self.mirrored_points_of is None or plain.difference <= MAX_SINGLE_DIFFERENCE:
            return plain
        mirror = compare(self.points_of(row_a), self.mirrored_points_of(row_b))
        return mirror if mirror.difference < plain.difference and mirror.inliers >= MIN_INLIERS else plain

    def at_moment(self, row_a, row_b, file_b, seconds, off_by, decode=True):
        """Frame `row_a` against file b's frame at `seconds`: its sampled frame `row_b`
        (`off_by` seconds away from it; None: b has no frame at that time) and, where that is
        a moment off and shows the same scene but not the same instant, the frame decoded at
        that very time (unless not `decode`). (The closer Comparison, the difference of the
        one made at that very moment or None: none was.)"""
        plain = self(row_a, row_b)
        if off_by is not None and off_by <= PHASE_SLACK:
            return plain, plain.difference
        if (not decode or off_by is None or self.exact_points_of is None
                or plain.difference <= MAX_SINGLE_DIFFERENCE or plain.inliers < MIN_INLIERS):
            return plain, None
        exact_points = self.exact_points_of(file_b, round(seconds, 3))
        if exact_points is None:
            return plain, None
        exact = compare(self.points_of(row_a), exact_points)
        closer = (same_picture(exact), -exact.difference) > (same_picture(plain), -plain.difference)
        return exact if closer else plain, exact.difference


def same_picture(comparison, single=False):
    """Whether a Comparison shows the same picture; `single`: of a file of one picture (a photo,
    a still), which has no neighbours in time to back it, so it must be closer."""
    return (comparison.inliers >= MIN_INLIERS and comparison.overlap >= MIN_OVERLAP
            and comparison.difference <= (MAX_SINGLE_DIFFERENCE if single else MAX_DIFFERENCE))


def an_instant(comparisons, moment_differences):
    """Whether a run of frame pairs (Comparisons, and the differences of those compared at their
    very moment or None: Comparer.at_moment) shows the same instant: one pair as close as a
    photo's copy, or none compared at its very moment to say otherwise (sampled a moment apart,
    things moved a little: the run is judged by its length). A copy's frames at the same moment
    are the same picture but for the encoding; a fixed camera's at another moment differ where
    things moved."""
    verified = [(c.difference, moment) for c, moment in zip(comparisons, moment_differences) if same_picture(c)]
    close = any(difference <= MAX_SINGLE_DIFFERENCE or (moment is not None and moment <= MAX_SINGLE_DIFFERENCE)
                for difference, moment in verified)
    return close or all(moment is None for _, moment in verified)


class MomentPoints:
    """FramePoints of a video's own frame at any moment, decoded from the file at the size of
    its sampled frames (sampling.full_resolution_frames, then resized), each moment once: a
    Comparer's `exact_points_of`. `paths` ({file: path}) names the videos, `size_of(file)`
    gives their sampled frames' (width, height) or None; at most `budget` moments are
    decoded (each a seek and a few frames decoded: bounded work). A photo, a file not named,
    past the budget, gone or no longer decoding has None, and `failures` says why. Its count
    is safe from several threads; copies.find_stretches, which aligns pairs on several, asks
    for moments in the pairs' order, so the budget leaves out the same ones every time."""

    def __init__(self, paths, size_of, budget, cached=256):
        import functools
        import threading

        self.paths, self.size_of, self.budget = paths, functools.lru_cache(maxsize=None)(size_of), budget
        self._counting = threading.Lock()
        self.failures = {}  # {file: why its moments could not be read}
        self.decoded = 0  # moments decoded
        self._points = functools.lru_cache(maxsize=cached)(self._decoded)

    def __call__(self, file, seconds):
        return self._points(file, seconds)

    def _decoded(self, file, seconds):
        from workers.pipeline.files import media_kind
        from workers.pipeline.images import resize
        from workers.pipeline.sampling import MediaError, PastTheEnd, full_resolution_frames

        path = self.paths.get(file)
        if path is None or file in self.failures or media_kind(path) != "video":
            return None
        size = self.size_of(file)
        if size is None:
            return None
        with self._counting:
            if self.decoded >= self.budget:
                return None
            self.decoded += 1
        try:
            for _, pixels in full_resolution_frames(path, [seconds]):
                return frame_points(resize(pixels, *size))
        except PastTheEnd:
            return None  # this moment only
        except MediaError as exc:
            self.failures[file] = str(exc)  # its sampled frames still count; the caller says what failed
        return None
