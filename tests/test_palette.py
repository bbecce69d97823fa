"""Clip GIFs (issue 15): palette quantization, flicker, GIF writing and clip decoding
(workers/pipeline/palette.py, gifs.py, clip_frames.py), on synthetic frames of known colours
and small generated media. Properties are asserted, not figures of one seed or one CPU."""
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.media import ffmpeg, make_video
from workers.pipeline.clip_frames import clip_frames
from workers.pipeline.gifs import durations_ms, pillow_gif, write_gif
from workers.pipeline.palette import (
    PaletteError, flicker, nearest, quantize_clip, reference_palette, to_lab, transfer,
)
from workers.pipeline.sampling import MediaError

TRUE = np.array([[200, 30, 30], [30, 160, 40], [40, 60, 210], [230, 220, 90]], np.uint8)


def blocks(colours, size=48, noise=0, seed=0, shares=None):
    """A frame of horizontal bands of `colours` (heights in proportion to `shares`), with
    uniform noise of +-`noise` per channel."""
    shares = np.ones(len(colours)) if shares is None else np.asarray(shares, float)
    rows = np.repeat(np.arange(len(colours)), np.round(shares / shares.sum() * size).astype(int))[:size]
    rows = np.pad(rows, (0, size - len(rows)), mode="edge")
    frame = np.asarray(colours, np.int16)[rows][:, None, :].repeat(size, axis=1)
    if noise:
        frame = frame + np.random.default_rng(seed).integers(-noise, noise + 1, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def shown(quantized):
    return [quantized.rgb(i) for i in range(len(quantized))]


def delta_e(a, b):
    return np.linalg.norm(to_lab(np.asarray(a, np.uint8)) - to_lab(np.asarray(b, np.uint8)), axis=-1)


@pytest.mark.parametrize("distance", ["euclidean", "manhattan"])
@pytest.mark.parametrize("seeding", ["sequential", "independent", "global"])
def test_the_palette_of_known_colours_is_recovered(distance, seeding):
    frames = [blocks(TRUE, noise=3, seed=i) for i in range(3)]
    quantized = quantize_clip(frames, 4, distance, seeding)
    for palette in quantized.palettes:
        assert len(palette) == 4
        for colour in TRUE:
            assert delta_e(palette, np.broadcast_to(colour, palette.shape)).min() < 2.0


def test_sequential_seeding_keeps_each_centre_in_its_place_while_colours_drift():
    frames = [blocks(np.clip(TRUE.astype(int) + 3 * i, 0, 255), noise=2, seed=i) for i in range(8)]
    quantized = quantize_clip(frames, 4, seeding="sequential", hold=False)
    order = [tuple(delta_e(palette[:, None], TRUE[None]).argmin(axis=1)) for palette in quantized.palettes]
    assert sorted(order[0]) == [0, 1, 2, 3] and set(order) == {order[0]}
    drift = delta_e(quantized.palettes[0], quantized.palettes[-1])
    assert (drift > 2).all()  # the centres did follow the colours (not held: hold=False)


def test_k_medians_centres_are_the_medians_of_their_members():
    # Each band is 60 % one grey and 40 % another: the median is the first, the mean is not.
    darks, lights = [[50, 50, 50]] * 6 + [[70, 70, 70]] * 4, [[200, 180, 160]] * 6 + [[230, 220, 200]] * 4
    frame = np.array(darks + lights, np.uint8)[:, None, :].repeat(20, axis=1)
    medians = quantize_clip([frame], 2, "manhattan").palettes[0]
    means = quantize_clip([frame], 2, "euclidean").palettes[0]
    assert {tuple(c) for c in medians} == {(50, 50, 50), (200, 180, 160)}
    assert delta_e(np.sort(means, axis=0), np.sort(medians, axis=0)).min() > 3
    indices = quantize_clip([frame], 2, "manhattan").indices[0]
    for j, centre in enumerate(to_lab(medians)):
        members = to_lab(frame)[indices == j]
        assert np.allclose(np.median(members, axis=0), centre, atol=0.5)


def test_more_colours_asked_than_there_are_gives_a_shorter_exact_palette():
    frame = blocks(TRUE[:3])
    for distance in ("euclidean", "manhattan"):
        for seeding in ("sequential", "independent", "global"):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no ConvergenceWarning from scikit-learn
                quantized = quantize_clip([frame, frame], 16, distance, seeding)
            assert [len(p) for p in quantized.palettes] == [3, 3]
            assert np.array_equal(quantized.rgb(1), frame)


def test_a_sequential_clip_that_gains_colours_keeps_the_centres_it_had():
    frames = [blocks(TRUE[:2]), blocks(TRUE[:2]), blocks(TRUE)]
    quantized = quantize_clip(frames, 4, seeding="sequential")
    assert [len(p) for p in quantized.palettes] == [2, 2, 4]
    assert np.array_equal(quantized.palettes[2][:2], quantized.palettes[1])
    assert np.array_equal(quantized.rgb(2), frames[2])


def test_global_seeding_shares_one_palette():
    frames = [blocks(TRUE, noise=4, seed=i) for i in range(4)]
    assert quantize_clip(frames, 4, seeding="global").shared_palette()


def test_transfer_matches_frequencies_by_rank():
    assert list(transfer([10, 60, 30], [50, 15, 35])) == [1, 0, 2]
    mapping = transfer([5, 70, 25, 0], [40, 60])  # more clusters than colours: every cluster gets one
    assert mapping[1] == 1 and set(mapping) <= {0, 1} and len(mapping) == 4


def test_palette_transfer_gives_the_most_frequent_region_the_most_frequent_reference_colour():
    target = blocks(TRUE[:3], size=60, noise=2, shares=[6, 3, 1])
    reference_colours = np.array([[10, 10, 10], [250, 250, 250], [240, 120, 0]], np.uint8)
    reference = blocks(reference_colours, size=60, shares=[2, 5, 3])
    colours, counts = reference_palette(reference, 3)
    assert list(counts) == sorted(counts, reverse=True) and counts.sum() == 60 * 60
    for seeding in ("sequential", "independent", "global"):
        quantized = quantize_clip([target, target], 3, seeding=seeding, palette_from=reference)
        out = quantized.rgb(1)
        for band, expected in ((5, [250, 250, 250]), (40, [240, 120, 0]), (58, [10, 10, 10])):
            assert tuple(out[band, 5]) == tuple(expected), (seeding, band)


def test_a_still_clip_does_not_flicker_under_sequential_seeding_but_does_under_independent():
    frame = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    still = [frame] * 5
    assert flicker(still, still) == 0.0
    for distance in ("euclidean", "manhattan"):
        for hold in (False, True):
            assert flicker(still, shown(quantize_clip(still, 8, distance, "sequential", hold=hold))) == 0.0
        independent = quantize_clip(still, 8, distance, "independent")
        assert flicker(still, shown(independent)) > 1.0


def test_flicker_only_counts_pixels_where_the_source_was_still():
    left, right = np.zeros((10, 20, 3), np.uint8), np.zeros((10, 20, 3), np.uint8)
    right[:, 10:] = 255  # half the frame changes in the source
    moved = right.copy()
    moved[:, :5] = 40  # the shown clip also changes a quarter of the frame where the source was still
    assert flicker([left, right], [left, right]) == 0.0
    assert flicker([left, right], [left, moved]) == pytest.approx(delta_e(moved[0, 0], left[0, 0]) / 2, rel=1e-3)
    assert flicker([left], [moved]) == 0.0


@pytest.mark.parametrize("bad", [dict(colours=1), dict(colours=257), dict(colours="16"), dict(colours=True),
                                 dict(distance="cosine"), dict(seeding="random")])
def test_invalid_parameters_are_a_clear_error(bad):
    with pytest.raises(PaletteError, match=next(iter(bad))):
        quantize_clip([blocks(TRUE)], **bad)


def test_frames_that_cannot_be_quantized_are_a_clear_error():
    with pytest.raises(PaletteError, match="no frames"):
        quantize_clip([], 4)
    with pytest.raises(PaletteError, match="every frame must be"):
        quantize_clip([blocks(TRUE, size=8), blocks(TRUE, size=10)], 4)
    with pytest.raises(PaletteError, match="uint8"):
        quantize_clip([np.zeros((4, 4, 3), np.float32)], 4)


def test_one_frame_and_grey_frames_quantize():
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    quantized = quantize_clip([grey], 4)
    assert len(quantized) == 1 and quantized.rgb(0).shape == (8, 64, 3)
    assert (quantized.palettes[0].max(axis=1) - quantized.palettes[0].min(axis=1) <= 2).all()  # greys


def test_nearest_by_either_distance():
    centres = np.array([[5, 5, 0], [8, 0, 0]], np.float32)  # from the origin: L2 7.1 and 8, L1 10 and 8
    assert list(nearest(np.zeros((1, 3)), centres, "euclidean")) == [0]
    assert list(nearest(np.zeros((1, 3)), centres, "manhattan")) == [1]
    many = np.random.default_rng(0).normal(size=(5000, 3)) * 50
    for distance, norm in (("euclidean", 2), ("manhattan", 1)):
        gaps = np.linalg.norm(many[:, None] - TRUE[None].astype(float), ord=norm, axis=2)
        assert (nearest(many, TRUE, distance) == gaps.argmin(axis=1)).mean() > 0.999  # float32: ties may differ


def test_durations_come_from_the_times_on_the_clips_clock():
    assert durations_ms([0, 0.1, 0.25]) == [100, 150, 130]  # the last: the median step, 0.125 s
    assert sum(durations_ms(np.arange(30) / 30)) == 1000  # 3.33 cs a frame, no drift
    assert durations_ms([0.0]) == [100] and min(durations_ms([0, 0.001, 0.1])) == 20


def test_write_gif_round_trips_frames_durations_loop_and_palettes(tmp_path):
    frames = [blocks(np.roll(TRUE, i, axis=0), noise=3, seed=i) for i in range(3)]
    times = [0.0, 0.1, 0.25]
    for seeding in ("sequential", "independent", "global"):
        quantized = quantize_clip(frames, 4, seeding=seeding)
        path = tmp_path / f"{seeding}.gif"
        write_gif(path, quantized, times)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        with Image.open(path) as gif:
            assert gif.n_frames == 3 and gif.info["loop"] == 0
            for i in range(3):
                gif.seek(i)
                assert gif.info["duration"] == [100, 150, 130][i]
                assert np.array_equal(np.asarray(gif.convert("RGB")), quantized.rgb(i))
    reference = pillow_gif(tmp_path / "pillow.gif", frames, times, 4)
    assert len(reference) == 3 and all(len(p) <= 4 for p in reference.palettes)
    with Image.open(tmp_path / "pillow.gif") as gif:
        assert gif.n_frames == 3 and np.array_equal(np.asarray(gif.convert("RGB")), reference.rgb(0))


def test_a_one_frame_gif(tmp_path):
    quantized = quantize_clip([blocks(TRUE)], 4)
    write_gif(tmp_path / "one.gif", quantized, [3.0])
    with Image.open(tmp_path / "one.gif") as gif:
        assert gif.n_frames == 1 and np.array_equal(np.asarray(gif.convert("RGB")), quantized.rgb(0))


def test_clip_frames_at_a_rate_and_width_from_a_video(tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=4, size="320x180", rate=30)
    times, frames = clip_frames(video, 1.0, 2.0, 10, 160)
    assert frames.shape == (10, 90, 160, 3) and frames.dtype == np.uint8
    assert times[0] == pytest.approx(1.0, abs=0.02) and np.allclose(np.diff(times), 0.1, atol=0.02)
    assert (times >= 1.0 - 1e-3).all() and (times < 2.0).all()
    assert len(np.unique(frames.reshape(10, -1), axis=0)) == 10  # testsrc2 moves every frame


@pytest.mark.parametrize("name, args", [
    ("grey.mkv", ("-vf", "format=gray", "-c:v", "ffv1")),
    ("ten.mp4", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le")),
])
def test_grey_and_ten_bit_videos_decode_and_quantize(tmp_path, name, args):
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", 2, *args, path)
    times, frames = clip_frames(path, 0.5, 1.5, 5, 128)
    assert frames.shape == (5, 72, 128, 3)
    if name.startswith("grey"):
        assert (frames.max(axis=3) == frames.min(axis=3)).all()
    assert len(quantize_clip(frames, 8)) == 5


def test_a_photo_is_its_one_frame(tmp_path):
    Image.fromarray(blocks(TRUE, size=40)).save(tmp_path / "p.png")
    times, frames = clip_frames(tmp_path / "p.png", 0, 5, 10, 20)
    assert list(times) == [0.0] and frames.shape == (1, 20, 20, 3)


def test_clips_outside_the_video_or_of_no_media_are_a_clear_error_naming_the_file(tmp_path):
    video = make_video(tmp_path / "short.mp4", seconds=2)
    with pytest.raises(MediaError, match=r"the clip 70-76 s is past the end of .*short\.mp4 \(2\.0 s\)"):
        clip_frames(video, 70, 76, 10, 160)
    with pytest.raises(MediaError, match=r"1-5 s ends after the end of .*short\.mp4"):
        clip_frames(video, 1, 5, 10, 160)
    with pytest.raises(MediaError, match="short.mp4.*empty"):
        clip_frames(video, 1.5, 1.0, 10, 160)
    with pytest.raises(MediaError, match="gone.mp4"):
        clip_frames(tmp_path / "gone.mp4", 0, 1, 10, 160)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(MediaError, match="text.mp4"):
        clip_frames(tmp_path / "text.mp4", 0, 1, 10, 160)
