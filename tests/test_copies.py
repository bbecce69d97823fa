"""Copy detection's pipeline (workers/pipeline/frame_match.py, copies.py) on generated pictures:
each transformation of a copy is seen as the same picture, another picture is not, and a
clip cut from a video is found at its offset."""
import numpy as np
import pytest

from workers.pipeline import copies, frame_match
from tests.media import shapes_picture
from workers.pipeline.frame_match import compare, frame_points

pytestmark = pytest.mark.django_db(databases=[])  # no database: the module's tests are pure


def picture(seed):
    return shapes_picture(seed)


def reencoded(image, quality=20):
    import cv2

    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]


def in_frame(image, size=(300, 534)):
    """The image fitted into a frame of `size` with bars, as sampling stores it."""
    import cv2

    height, width = image.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    fitted = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    frame = np.zeros((*size, 3), np.uint8)
    top, left = (size[0] - fitted.shape[0]) // 2, (size[1] - fitted.shape[1]) // 2
    frame[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
    return frame


def half(image):
    import cv2

    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def cropped(image, share=0.9):
    height, width = image.shape[:2]
    top, left = int(height * (1 - share)), int(width * (1 - share) / 2)
    return image[top:top + int(height * share), left:left + int(width * share)]


TRANSFORMS = {
    "re-encoded": reencoded,
    "half size": lambda image: in_frame(half(image)),
    "10% crop": lambda image: in_frame(cropped(image)),
    "colour-shifted": lambda image: np.clip(image.astype(int) * [1.2, 1.0, 0.8] + 20, 0, 255).astype(np.uint8),
    "all at once": lambda image: reencoded(in_frame(half(cropped(image))), quality=40),
}


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_copy_shows_the_same_picture(transform):
    original = picture(1)
    comparison = compare(frame_points(original), frame_points(TRANSFORMS[transform](original)))
    assert frame_match.same_picture(comparison), comparison


def test_another_picture_or_a_moved_object_is_not_the_same_picture():
    import cv2

    original = picture(1)
    assert not frame_match.same_picture(compare(frame_points(original), frame_points(picture(2))))
    changed = original.copy()  # the same scene, with a large object come into it
    cv2.rectangle(changed, (60, 60), (200, 220), (250, 250, 40), -1)
    comparison = compare(frame_points(original), frame_points(changed))
    assert comparison.inliers >= frame_match.MIN_INLIERS  # the rest of the scene matches...
    assert not frame_match.same_picture(comparison)  # ...but the picture is not the same


def test_a_mirror_image_matches_only_when_mirrors_are_asked_for():
    original = picture(3)
    mirror = np.ascontiguousarray(original[:, ::-1])
    assert not frame_match.same_picture(compare(frame_points(original), frame_points(mirror)))
    assert frame_match.same_picture(compare(frame_points(original), frame_points(mirror, mirrored=True)))


def test_a_blank_frame_is_compared_without_error():
    blank = np.zeros((300, 534, 3), np.uint8)
    assert compare(frame_points(blank), frame_points(picture(1))) == compare(frame_points(blank), frame_points(blank))


def test_offset_peaks_find_a_line_among_scattered_matches_and_a_loop_twice():
    rng = np.random.default_rng(0)
    frames = np.arange(10)
    line = 3.0 + rng.uniform(-0.1, 0.1, 10)
    scattered = rng.uniform(-20, 20, 10)
    offsets = np.r_[line, scattered]
    peaks = copies.offset_peaks(offsets, np.ones(20), np.r_[frames, frames], tolerance=0.5)
    assert abs(peaks[0] - 3.0) < 0.1
    looped = np.r_[np.full(10, 0.0), np.full(10, 8.0)]
    assert sorted(round(p) for p in copies.offset_peaks(looped, np.ones(20), np.r_[frames, frames], 0.5)) == [0, 8]
    # a file of two frames: a second place needs only two of them
    twice = np.r_[0.0, 0.0, 8.0, 8.0]
    assert len(copies.offset_peaks(twice, np.ones(4), np.r_[0, 1, 0, 1], 0.5)) == 1
    assert sorted(round(p) for p in copies.offset_peaks(twice, np.ones(4), np.r_[0, 1, 0, 1], 0.5, least=2)) == [0, 8]


def thumbnails(frames):
    """Stand-ins for the map's PCA vectors: 16x9 grey thumbnails (fixed, no network)."""
    import cv2

    return np.stack([cv2.resize(frame.mean(axis=2).astype(np.float32), (16, 9), interpolation=cv2.INTER_AREA).ravel()
                     for frame in frames])


def test_a_clip_cut_from_a_video_is_found_at_its_offset_and_an_unrelated_video_is_not():
    video = [picture(100 + i) for i in range(12)]  # file 0: 12 frames, 0.5 s apart
    clip = [reencoded(in_frame(half(frame))) for frame in video[5:9]]  # file 1: its 2.5 s to 4 s
    unrelated = [picture(200 + i) for i in range(6)]  # file 2
    frames = video + clip + unrelated
    files = copies.Files(sources=np.repeat([0, 1, 2], [12, 4, 6]),
                         times=np.r_[np.arange(12) * 0.5, np.arange(4) * 0.5, np.arange(6) * 0.5])
    points = {}

    def points_of(row):
        if row not in points:
            points[row] = frame_points(frames[row])
        return points[row]

    everything = copies.find_stretches(thumbnails(frames), files, points_of, neighbours=4, min_similarity=-1,
                                       threads=4)
    found = [s for s in everything if s.score >= 0.5]
    assert [(s.a, s.b) for s in found] == [(0, 1)]
    # Pairs of files are aligned on several threads: the same stretches, in the same order, on one.
    assert copies.find_stretches(thumbnails(frames), files, points_of, neighbours=4, min_similarity=-1,
                                 threads=1) == everything
    stretch = found[0]
    assert (stretch.a_start, stretch.a_stop) == (2.5, 4.0)
    assert (stretch.b_start, stretch.b_stop) == (pytest.approx(0.0, abs=0.1), pytest.approx(1.5, abs=0.1))
    assert stretch.pairs == [(5, 12), (6, 13), (7, 14), (8, 15)]


def test_the_offset_is_refined_between_sampled_frames():
    """b samples the same smooth scene as a, 2.2 s later in the scene and at another phase: the
    frames of b fall between those of a, and the offset comes out to a fraction of a step."""
    def scene(t):
        return np.stack([np.cos(t / 2), np.sin(t / 2), np.cos(t / 3), np.sin(t / 3)], axis=1)

    a_times = np.arange(0, 10, 0.5)
    b_times = np.arange(0, 6, 0.5)
    x = copies.unit_rows(np.r_[scene(a_times), scene(b_times + 2.2)])
    times = np.r_[a_times, b_times]
    a_rows = np.arange(len(a_times))
    b_rows = len(a_times) + np.arange(len(b_times))
    # pairs at the coarse offset -2.0 (b's time minus a's): a at 2.0 with b at 0.0, and so on
    pairs = [(int(a), int(b)) for a, b in zip(a_rows[4:4 + len(b_rows)], b_rows)]
    offset = copies._refined_offset(-2.0, pairs, times, (b_rows[0], b_rows[-1] + 1), x)
    assert offset == pytest.approx(-2.2, abs=0.05)


def test_a_run_bridges_one_failed_check_but_not_two():
    assert copies._longest_run([True, False, True, False, False, True]) == (0, 2)
    assert copies._longest_run([True, False, False, True, True]) == (3, 4)
    assert copies._longest_run([False, False]) is None


def test_the_end_of_a_run_is_found_between_two_checks():
    holds = lambda i: i <= 37  # noqa: E731
    assert copies._first_true(100, 0, holds) == 37  # from the failed check at 100 back to the last that holds
    assert copies._first_true(0, 60, lambda i: i >= 5) == 5


def test_a_mirrored_copy_is_found_only_when_mirrors_are_looked_for():
    video = [picture(300 + i) for i in range(6)]
    mirrored = [np.ascontiguousarray(frame[:, ::-1]) for frame in video]
    frames = video + mirrored
    files = copies.Files(sources=np.repeat([0, 1], 6), times=np.r_[np.arange(6) * 0.5, np.arange(6) * 0.5])

    def points_of(row, mirror=False):
        return frame_points(frames[row], mirrored=mirror)

    vectors = np.r_[thumbnails(video), thumbnails(video)]  # as if the features saw through the mirror
    plain = copies.find_stretches(vectors, files, points_of, neighbours=4, min_similarity=-1)
    assert not [s for s in plain if s.score >= 0.5]
    found = [s for s in copies.find_stretches(vectors, files, points_of, neighbours=4, min_similarity=-1,
                                              mirrored_points_of=lambda row: points_of(row, True)) if s.score >= 0.5]
    assert [(s.a, s.b, s.verified) for s in found] == [(0, 1, 6)]


def fixed_camera(t, seed=7, lower=0, speed=120):
    """A fixed camera's picture at `t` seconds: a still scene, and two balls crossing it at
    `speed` px/s (at 120, a quarter of a second moves them about four blocks), `lower` pixels
    lower than the first take's."""
    import cv2

    frame = shapes_picture(seed).copy()
    for ball, y in ((0, 90), (1, 210)):
        x = int(60 + speed * t + 40 * ball) % 534
        cv2.circle(frame, (x, y + lower), 34, (250, 250, 60 + 150 * ball), -1)
    return frame


def test_frames_sampled_a_moment_apart_are_compared_at_the_exact_moment():
    """A clip cut from a fixed camera's video a quarter second off its samples: its sampled
    frames show the balls elsewhere than the video's nearest samples, so they verify only
    when the moment between is decoded (exact_points_of), which places the clip too."""
    cut = 2.25
    a_times, b_times = np.arange(12) * 0.5, np.arange(6) * 0.5
    frames = [fixed_camera(t) for t in a_times] + [fixed_camera(cut + t) for t in b_times]
    files = copies.Files(sources=np.repeat([0, 1], [12, 6]), times=np.r_[a_times, b_times])
    starts = {0: 0.0, 1: cut}
    decoded = []

    def points_of(row):
        return frame_points(frames[row])

    def exact_points_of(file, seconds):
        assert 0.0 <= seconds <= 2.5  # never past the ends of the file
        decoded.append((file, seconds))
        return frame_points(fixed_camera(starts[file] + seconds))

    def found(**exact):
        return [s for s in copies.find_stretches(thumbnails(frames), files, points_of, neighbours=6,
                                                 min_similarity=-1, **exact) if s.verified]

    sampled_only = found()
    assert not any(s.verified >= 3 for s in sampled_only) and not decoded
    stretch = max(found(exact_points_of=exact_points_of), key=lambda s: s.verified)
    assert stretch.verified >= 4 and stretch.score >= 0.5
    assert stretch.b_start - stretch.a_start == pytest.approx(-cut, abs=0.1)
    assert decoded and {file for file, _ in decoded} == {1}


@pytest.mark.parametrize("phase", [0.0, 0.25], ids=["sampled at the same instants", "a quarter second off"])
def test_the_same_scene_at_another_moment_is_not_a_copy(phase):
    """Another take before the same fixed camera, its balls 6 px lower: at every moment it is
    loosely the same picture as the first take (as frames of a copy sampled a moment apart
    are), but never the same instant, so it is no copy; a clip of the first take is. Sampled at
    the first take's instants, the sampled frames say so; a quarter second off, the frames
    decoded at the exact moments."""
    cut, times = 2.0 + phase, np.arange(12) * 0.5
    take = [fixed_camera(t) for t in times]
    clip = [reencoded(fixed_camera(cut + t)) for t in times[:6]]
    other_take = [fixed_camera(cut + t, lower=6) for t in times[:6]]
    assert all(frame_match.same_picture(compare(frame_points(fixed_camera(cut + t)), frame_points(other_frame)))
               for t, other_frame in zip(times, other_take))  # loosely the same picture, each of them
    for other, lower, copied in ((clip, 0, True), (other_take, 6, False)):
        frames = take + other
        files = copies.Files(sources=np.repeat([0, 1], [12, 6]), times=np.r_[times, times[:6]])

        def exact_points_of(file, seconds):
            return frame_points(fixed_camera(seconds) if file == 0 else fixed_camera(cut + seconds, lower=lower))

        found = [s for s in copies.find_stretches(thumbnails(frames), files, lambda row: frame_points(frames[row]),
                                                  neighbours=6, min_similarity=-1, exact_points_of=exact_points_of)
                 if s.score >= 0.5]
        assert [(s.a, s.b) for s in found] == ([(0, 1)] if copied else [])
        assert all(s.b_start - s.a_start == pytest.approx(-cut, abs=0.1) for s in found)


def test_frames_a_moment_apart_are_judged_by_their_run_where_no_moment_was_compared():
    """A clip of a slow scene cut a quarter second off the video's samples, with no exact
    moments to decode: its frames are loosely the same picture as the video's nearest, none
    at its very moment (not even at the ends, where the aligned time falls past the clip's
    frames), so the run's length decides, and it is a copy."""
    times = np.arange(12) * 0.5
    frames = [fixed_camera(t, speed=24) for t in times] + [fixed_camera(2.25 + t, speed=24) for t in times[:6]]
    files = copies.Files(sources=np.repeat([0, 1], [12, 6]), times=np.r_[times, times[:6]])
    found = [s for s in copies.find_stretches(thumbnails(frames), files, lambda row: frame_points(frames[row]),
                                              neighbours=6, min_similarity=-1) if s.score >= 0.5]
    assert [(s.a, s.b) for s in found] == [(0, 1)] and found[0].verified >= 4
    assert found[0].b_start - found[0].a_start == pytest.approx(-2.25, abs=0.5)


def test_a_still_video_is_a_copy_of_the_one_instant_it_shows():
    """A still video (one picture, held) shows one instant of a fixed camera's video: it is a copy of
    that instant, however many of its frames face other moments, and each of its frames copies
    it; a still of another take is not, of the video nor of the first still."""
    from workers.pipeline.copy_groups import group_copies

    times = np.arange(12) * 0.5
    frames = ([fixed_camera(t) for t in times] + [reencoded(fixed_camera(3.0))] * 8
              + [fixed_camera(3.0, lower=6)] * 8)
    files = copies.Files(sources=np.repeat([0, 1, 2], [12, 8, 8]), times=np.r_[times, times[:8], times[:8]])
    stretches = copies.find_stretches(thumbnails(frames), files, lambda row: frame_points(frames[row]),
                                      neighbours=8, min_similarity=-1)
    found = [s for s in stretches if s.score >= 0.5]
    assert [(s.a, s.b, s.single, s.a_start, s.a_stop, s.b_start, s.b_stop) for s in found] == [
        (0, 1, True, 3.0, 3.0, 0.0, 3.5)]
    _, relations, copy_of = group_copies(stretches, files.spans, files.times, 0.5)
    assert [(r["copy"], r["original"], r["kind"], r["original_start"]) for r in relations] == [(1, 0, "contained", 3.0)]
    assert copy_of[12:20].tolist() == [6] * 8 and (copy_of[20:] == -1).all()


def test_exact_moments_are_read_in_the_pairs_order_whatever_the_threads():
    """Pairs of files are aligned on several threads, but ask for exact moments in their
    order: with a budget that runs out, the same moments are read and the same stretches found."""
    cuts = {0: 0.0, 1: 2.25, 2: 3.75}  # two clips of a fixed camera's video, overlapping each other
    a_times, clip_times = np.arange(12) * 0.5, np.arange(6) * 0.5
    frames = [fixed_camera(cuts[file] + t) for file, times in enumerate((a_times, clip_times, clip_times))
              for t in times]
    files = copies.Files(sources=np.repeat([0, 1, 2], [12, 6, 6]), times=np.r_[a_times, clip_times, clip_times])

    def detect(threads, budget=6):
        asked = []

        def exact_points_of(file, seconds):
            asked.append((file, seconds))
            return frame_points(fixed_camera(cuts[file] + seconds)) if len(asked) <= budget else None

        found = copies.find_stretches(thumbnails(frames), files, lambda row: frame_points(frames[row]), neighbours=6,
                                      min_similarity=-1, exact_points_of=exact_points_of, threads=threads)
        return found, asked

    one_thread = detect(1)
    assert {file for file, _ in one_thread[1]} == {1, 2} and len(one_thread[1]) > 6  # pairs ask past the budget
    assert detect(4) == one_thread


def test_a_moment_of_a_video_is_decoded_at_the_size_of_its_samples(tmp_path):
    from tests.media import make_panning_video
    from workers.pipeline.frame_match import MomentPoints
    from workers.pipeline.sampling import SamplingParams, full_resolution_frames, sample_source
    from workers.pipeline.arrays import open_array

    video = make_panning_video(tmp_path / "pan.mp4", seed=3)
    sample_source(video, tmp_path / "frames", SamplingParams(every=15), "checksum")
    sampled, index = open_array(tmp_path / "frames", "frames"), open_array(tmp_path / "frames", "index")
    size = (sampled.shape[2], sampled.shape[1])
    moments = MomentPoints({0: video, 1: tmp_path / "gone.mp4", 2: tmp_path / "photo.jpg"}, lambda file: size,
                           budget=4)
    at_sample = moments(0, float(index["time"][2]))
    assert at_sample.grey.shape == sampled.shape[1:3]
    assert compare(frame_points(sampled[2]), at_sample).difference < 0.2  # the very frame sampled
    between = float(index["time"][2] + index["time"][3]) / 2
    assert moments(0, between) is not None and moments.decoded == 2
    assert moments(0, between) is moments(0, between)  # decoded once
    assert moments(0, 60.0) is None and 0 not in moments.failures  # past the end: that moment only
    assert moments(1, 1.0) is None and "gone.mp4" in moments.failures[1]
    assert moments(2, 0.0) is None and 2 not in moments.failures  # a photo has no other moment: not decoded
    assert moments(0, 0.5) is None and moments.decoded == 4  # the budget is spent: no more decoding
    assert next(full_resolution_frames(video, [between]))[1].shape[:2] == (180, 320)


@pytest.mark.parametrize("exact_limit", [10**6, 100], ids=["exact index", "inverted file"])
def test_a_search_leaving_a_files_frames_out_never_answers_with_them(exact_limit):
    from workers.pipeline.neighbours import NeighbourIndex

    x = np.random.default_rng(0).normal(size=(3000, 32)).astype(np.float32)
    index = NeighbourIndex(exact_limit=exact_limit, nprobe=64).fit(x)
    distances, rows = index.search(x[100:400], 20, excluding=(100, 700))
    assert not ((rows >= 100) & (rows < 700)).any() and (rows >= 0).all()
    assert (np.diff(distances, axis=1) >= -1e-4).all()  # nearest first
    if index.is_exact:  # exactly the nearest others, as brute force finds them
        brute = ((x[100:400, None, :] - x[None, :, :]) ** 2).sum(axis=2)
        brute[:, 100:700] = np.inf
        assert (np.sort(rows, axis=1) == np.sort(np.argsort(brute, axis=1)[:, :20], axis=1)).mean() > 0.999
        assert np.allclose(distances, np.sort(brute, axis=1)[:, :20], rtol=1e-4, atol=1e-3)
        _, few = index.search(x[:5], 20, excluding=(0, 2990))  # only 10 others: the rest -1
        assert (few[:, :10] >= 2990).all() and (few[:, 10:] == -1).all()
