"""The sample stage on real media made by ffmpeg, checked against ffmpeg's own output."""
import os

import numpy as np
import pytest
from PIL import Image

from tests.media import ffmpeg, ffmpeg_frames, make_video, probe_frame_times
from workers.pipeline.arrays import open_array, read_manifest
from workers.pipeline.sampling import MediaError, SamplingParams, full_resolution_frames, sample_source

PARAMS = SamplingParams(width=160, height=90, every=10)


def frames_and_index(out):
    return np.asarray(open_array(out, "frames")), np.asarray(open_array(out, "index"))


def test_keeps_one_frame_in_n_with_exact_frames_and_times(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=3, size="320x180", rate=30)
    result = sample_source(video, tmp_path / "out", PARAMS, "c1")
    frames, index = frames_and_index(tmp_path / "out")
    assert result.frames == 9 and frames.shape == (9, 90, 160, 3)
    assert list(index["frame"]) == list(range(0, 90, 10))
    assert np.allclose(index["time"], [probe_frame_times(video)[n] for n in index["frame"]], atol=1e-6)
    # Each kept frame is, of all the frames ffmpeg's CLI decodes, closest to the one
    # with its own number: not a neighbour, not a smeared inexact seek.
    every_frame = ffmpeg_frames(video, 1, 160, 90).astype(int)
    for frame, number in zip(frames.astype(int), index["frame"]):
        distances = np.abs(every_frame - frame).mean(axis=(1, 2, 3))
        assert distances.argmin() == number and distances[number] < 3


def test_scales_to_fit_the_box_keeping_the_aspect_ratio(tmp_path):
    video = make_video(tmp_path / "square.mp4", seconds=1, size="200x200")
    result = sample_source(video, tmp_path / "out", SamplingParams(width=534, height=300), "c")
    assert (result.width, result.height) == (300, 300)
    assert open_array(tmp_path / "out", "frames").shape[1:] == (300, 300, 3)


def test_variable_frame_rate_gets_real_timestamps(tmp_path):
    # 30 frames at 30 fps, then 20 frames at 5 fps: one file, two rates.
    video = tmp_path / "vfr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30", "-frames:v", "50",
           "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/5)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", video)
    truth = probe_frame_times(video)
    assert truth[-1] == pytest.approx(1 + 19 / 5, abs=0.01)
    sample_source(video, tmp_path / "ratio", SamplingParams(width=160, height=90, every=5), "c")
    _, index = frames_and_index(tmp_path / "ratio")
    assert np.allclose(index["time"], [truth[n] for n in index["frame"]], atol=1e-6)
    # Two frames a second: the first frame at or after each half second.
    sample_source(video, tmp_path / "fps", SamplingParams(width=160, height=90, fps=2), "c")
    _, index = frames_and_index(tmp_path / "fps")
    expected = [min(t for t in truth if t >= half - 1e-6) for half in np.arange(0, truth[-1] + 1e-6, 0.5)]
    assert np.allclose(index["time"], expected, atol=1e-6)


def test_rotated_phone_video_is_turned_upright_like_ffmpeg_does(tmp_path):
    plain = make_video(tmp_path / "plain.mp4", seconds=1, size="320x180")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
    result = sample_source(rotated, tmp_path / "out", SamplingParams(width=534, height=300, every=10), "c")
    assert (result.source_width, result.source_height) == (180, 320)
    frames, _ = frames_and_index(tmp_path / "out")
    assert frames.shape[1:] == (300, 169, 3)
    reference = ffmpeg_frames(rotated, 10, 169, 300)  # ffmpeg autorotates by default
    assert np.abs(frames.astype(int) - reference.astype(int)).mean() < 3


def test_animated_gif_is_a_video(tmp_path):
    gif = tmp_path / "anim.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=120x90:rate=10:duration=2", gif)
    result = sample_source(gif, tmp_path / "out", SamplingParams(width=160, height=90, every=5), "c")
    assert result.kind == "video" and result.frames == 4
    _, index = frames_and_index(tmp_path / "out")
    assert np.allclose(index["time"], [0.0, 0.5, 1.0, 1.5], atol=0.011)


def test_photo_gets_exif_orientation_and_letterbox(tmp_path):
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "phone photo.jpg", exif=exif, quality=95)
    result = sample_source(tmp_path / "phone photo.jpg", tmp_path / "out", SamplingParams(534, 300), "c")
    assert result.kind == "photo" and result.frames == 1 and (result.source_width, result.source_height) == (100, 200)
    frame, index = frames_and_index(tmp_path / "out")
    frame = frame[0].astype(int)
    assert frame.shape == (300, 534, 3) and index["time"][0] == 0
    # Upright 100x200 scaled to 150x300, centred: black bars left and right.
    assert frame[:, :150].max() < 10 and frame[:, -150:].max() < 10
    top, bottom = frame[20:130, 200:334].mean(axis=(0, 1)), frame[170:280, 200:334].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60  # red on top after turning clockwise
    assert bottom[2] > 200 and bottom[0] < 60


def test_decompression_bomb_is_refused_with_the_file_named(tmp_path):
    bomb = tmp_path / "huge.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=3000x3000", "-frames:v", "1", bomb)
    with pytest.raises(MediaError, match="huge.png.*larger than the limit of 4,000,000 pixels"):
        sample_source(bomb, tmp_path / "out", PARAMS, "c", max_image_pixels=4_000_000)
    assert read_manifest(tmp_path / "out", "frames") is None


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"this is a shopping list, not a video\n" * 20, "not a video or photo that can be decoded"),
])
def test_bad_files_raise_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad file é.mp4"
    bad.write_bytes(content)
    with pytest.raises(MediaError, match=message) as error:
        sample_source(bad, tmp_path / "out", PARAMS, "c")
    assert "bad file é.mp4" in str(error.value)


def without_blocking(call, seconds=20):
    """Run `call` in a thread and return its outcome; fail if it is still blocked after
    `seconds` (opening a named pipe for reading waits for a writer forever)."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except Exception as exc:  # the outcome under test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked reading a named pipe"
    return outcome


def test_named_pipes_are_skipped_by_the_scan_and_never_opened(tmp_path):
    from workers.pipeline.files import find_media, open_regular

    video = make_video(tmp_path / "folder" / "real.mp4", seconds=1)
    pipe = tmp_path / "folder" / "fifo.mp4"
    os.mkfifo(pipe)
    os.symlink(pipe, tmp_path / "folder" / "link to fifo.mp4")
    files, skipped = find_media([tmp_path / "folder", pipe])
    assert files == [video]
    assert sorted(skipped) == [(str(pipe), "not a regular file (named pipe)", False)] * 2 + [
        (str(tmp_path / "folder" / "link to fifo.mp4"), "not a regular file (named pipe)", False)]
    # A file found regular and swapped for a pipe before it is read: refused, not waited on.
    for read in (lambda: open_regular(pipe), lambda: sample_source(pipe, tmp_path / "out", PARAMS, "c"),
                 lambda: list(full_resolution_frames(pipe, [0.0]))):
        error = without_blocking(read)["error"]
        assert "fifo.mp4: not a regular file (named pipe)" in str(error)
    assert not (tmp_path / "out").exists()


def test_truncated_video_keeps_what_decodes_and_says_what_did_not(tmp_path):
    video = make_video(tmp_path / "whole.mp4", seconds=4, extra=("-movflags", "+faststart"))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    result = sample_source(truncated, tmp_path / "out", PARAMS, "c")
    assert 0 < result.frames < 12
    assert "truncated" in result.warning or "decoding stopped" in result.warning
    frames, index = frames_and_index(tmp_path / "out")
    reference = ffmpeg_frames(video, 10, 160, 90)[: result.frames]
    assert np.abs(frames.astype(int) - reference.astype(int)).mean() < 3  # what was kept is right


def test_video_damaged_in_the_middle_keeps_the_good_frames_and_names_the_gap(tmp_path):
    import random

    clean = make_video(tmp_path / "clean.mkv", seconds=4, extra=("-g", "30"))
    data = bytearray(clean.read_bytes())
    noise = random.Random(1)
    for at in range(len(data) // 3, len(data) // 3 + len(data) // 8):
        data[at] = noise.randrange(256)
    (tmp_path / "damaged.mkv").write_bytes(bytes(data))
    result = sample_source(tmp_path / "damaged.mkv", tmp_path / "out", PARAMS, "c")
    assert "corrupt frame(s) skipped" in result.warning and "no frames decoded between" in result.warning
    frames, index = frames_and_index(tmp_path / "out")
    assert index["time"][-1] > 3.5  # decoding went on past the damage
    # Every kept frame is the clean video's frame at its timestamp: nothing smeared kept.
    reference = ffmpeg_frames(clean, 1, 160, 90).astype(int)
    for frame, time in zip(frames.astype(int), index["time"]):
        assert np.abs(reference[round(time * 30)] - frame).mean() < 3


def test_second_run_with_same_inputs_is_a_no_op(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    first = sample_source(video, tmp_path / "out", PARAMS, "c1")
    stamp = os.stat(tmp_path / "out" / "frames.bin").st_mtime_ns
    again = sample_source(video, tmp_path / "out", PARAMS, "c1")
    assert again.reused and again.frames == first.frames
    assert os.stat(tmp_path / "out" / "frames.bin").st_mtime_ns == stamp
    # Other parameters are other inputs: the stage runs again.
    changed = sample_source(video, tmp_path / "out", SamplingParams(160, 90, every=5), "c1")
    assert not changed.reused and changed.frames == 6


def test_the_pipeline_imports_no_django_celery_or_explorer():
    import subprocess
    import sys

    code = ("import sys, workers.pipeline.arrays, workers.pipeline.files, workers.pipeline.sampling, "
            "workers.pipeline.features, workers.pipeline.reduce, workers.pipeline.autoencoder, "
            "workers.pipeline.layout; "
            "print(sorted(m for m in ('django', 'celery', 'explorer', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
