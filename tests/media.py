"""Small test media made with ffmpeg's lavfi sources (nothing is checked in), and generated features."""
import json
import subprocess
from pathlib import Path

import numpy as np


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def make_video(path, seconds=2.0, size="320x180", rate=30, source="testsrc2", extra=()):
    """An H.264 video whose frames all differ (testsrc2 moves every frame)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}", "-t", seconds,
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, path)
    return path


def probe_frame_times(path):
    """Presentation time of every frame, as ffprobe decodes them (the oracle for timestamps)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time",
         "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout
    return [float(f["best_effort_timestamp_time"]) for f in json.loads(out)["frames"]]


def ffmpeg_frames(path, every, width, height):
    """The frames ffmpeg's own CLI keeps (one in `every`, autorotated, scaled), as RGB arrays."""
    import numpy as np

    raw = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-vf",
         f"select='not(mod(n\\,{every}))',scale={width}:{height}:flags=area", "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def make_scenes(path, scenes, seconds_each=4, size="320x180", rate=30, extra=()):
    """An H.264 video of distinct scenes one after another, each a lavfi source
    ("mandelbrot", "life=seed=3", ...) shown for `seconds_each` seconds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs, chains = [], []
    for i, scene in enumerate(scenes):
        name, _, options = scene.partition("=")
        inputs += ["-f", "lavfi", "-i", f"{name}=size={size}:rate={rate}" + (f":{options}" if options else "")]
        chains.append(f"[{i}]trim=duration={seconds_each},setpts=PTS-STARTPTS,format=yuv420p[s{i}]")
    joined = "".join(f"[s{i}]" for i in range(len(scenes)))
    graph = ";".join(chains) + f";{joined}concat=n={len(scenes)}:v=1:a=0[out]"
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", *extra, path)
    return path


def reencode(source, path, extra=("-vf", "scale=256:144", "-crf", "32")):
    """A re-encoded copy of a video: other size and quality, same frames and times."""
    ffmpeg("-i", source, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, path)
    return Path(path)


def shapes_picture(seed, height=300, width=534, blotch=6):
    """An RGB picture of random shapes on a blotchy ground (blotches of about `blotch` pixels):
    texture enough for keypoints, and another seed is a picture of the same style (a
    look-alike, not a copy)."""
    import cv2

    rng = np.random.default_rng(seed)
    image = cv2.resize((rng.random((max(height // blotch, 2), max(width // blotch, 2), 3)) * 255).astype(np.uint8),
                       (width, height), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(40 * height * width / (300 * 534))):
        centre = tuple(int(v) for v in rng.integers(0, (width, height)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(5, 40)), colour, -1)
        else:
            corner = (centre[0] + int(rng.integers(10, 80)), centre[1] + int(rng.integers(10, 60)))
            cv2.rectangle(image, centre, corner, colour, -1)
    return image


def make_panning_video(path, seed, seconds=4.0, size=(320, 180), rate=30, still=False):
    """An H.264 video of a camera panning across a shapes_picture(seed) three frames wide,
    with two balls moving across it: like real footage, each frame differs from the next in
    its motion, not only in noise. `still`: the first frame held (a still video)."""
    import cv2

    width, height = size
    canvas = shapes_picture(seed, height, 3 * width)
    frames = int(seconds * rate)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(rate), "-i", "-", "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", str(path)]
    with subprocess.Popen(command, stdin=subprocess.PIPE) as encoder:
        for number in range(frames):
            t = 0.0 if still else number / max(frames - 1, 1)
            left = int(round(t * 2 * width))
            scene = canvas.copy()
            for ball, speed in ((0, 1.0), (1, -0.7)):  # balls rolling across the scene as the camera follows
                x = int((0.3 + 2.4 * t + 0.1 * speed * t + 0.2 * ball) * width)
                cv2.circle(scene, (x, int(height * (0.3 + 0.4 * ball))), height // 8, (240, 240, 40 + 150 * ball), -1)
            frame = np.ascontiguousarray(scene[:, left:left + width])
            encoder.stdin.write(frame.tobytes())
        encoder.stdin.close()
    if encoder.returncode:
        raise RuntimeError(f"ffmpeg could not encode {path}")
    return path


def generated_videos(videos, frames=60, dims=4096, seed=0):
    """(features, video of each frame): each video a random walk from its own start, as the
    consecutive frames of a real video drift within a scene of their own (tests, tests/benchmarks/quality_report.py)."""
    rng = np.random.default_rng(seed)
    walks = [rng.normal(size=(1, dims)) * 3.0 + np.cumsum(rng.normal(size=(frames, dims)) * 0.15, axis=0)
             for _ in range(videos)]
    return np.concatenate(walks).astype(np.float32), np.repeat(np.arange(videos), frames)
