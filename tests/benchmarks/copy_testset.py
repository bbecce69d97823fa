"""Builds a test set for copy detection from the sample media, with its ground truth.

Videos: the sample videos and GIF previews as they are (three GIFs are excerpts of the mp4s),
plus copies made with ffmpeg: a re-encoded twin at another size, a heavily compressed twin,
a cropped twin, a colour-shifted, a mirrored and a watermarked twin, a 5.3 s 1280x720 clip
cut at a known offset and at another frame rate, a compilation of two stretches from two
videos, a loop (a clip twice), a one-frame clip and still videos (one a still of a video,
one a still of another part of it: a look-alike that is no copy).

Photos: frames of the sample media at least 5 s apart, and for every other one a
re-encoded, a half-size and a 10%-cropped version (plus, reported apart, colour-shifted,
mirrored and watermarked ones) and a few exact copies.

`videos-truth.json` and `photos-truth.json` list the copy pairs: {"a", "b", "kind":
"copy"|"contained"|"contains"|"exact", "transform", "b_start"}: "copy" and "contained" mean
all of a is in b from b_start seconds (a list: at each of them; None: at no one place, a
still), "contains" that a's a_start to a_start + seconds is b's b_start on. Any pair of files not listed (and not linked through a
listed pair) is unrelated, but for photos taken from one video (`--photo-of` in the
benchmark): frames of one fixed camera a few seconds apart can be the same picture but for
a person who moved, so those pairs are counted apart. Run from the repository root:

    .venv/bin/python tests/benchmarks/copy_testset.py OUT [--media ../shared/media/intel-sample-videos]
"""
import argparse
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "media" / "intel-sample-videos"
# Where the GIF previews start in their mp4s, measured by matching their first frame against
# every frame of the mp4 at the GIF's size (least mean absolute pixel difference). The GIFs
# play about 4% slower than their mp4s, so their ends drift by about 0.1 s.
GIF_STARTS = {"car-detection": 14.24, "one-by-one-person-detection": 23.0, "bottle-detection": 15.62}

# A broadcaster's logo: a half-transparent box in a corner, 15% x 8% of the picture.
WATERMARK = "drawbox=x=iw*0.82:y=ih*0.05:w=iw*0.15:h=ih*0.08:color=white@0.5:t=fill"
VIDEO_COPIES = [  # (name, source, ffmpeg arguments, transform, kind, b_start)
    ("car-small.mp4", "car-detection.mp4", ["-vf", "scale=384:216", "-crf", "26"], "re-encoded at half size",
     "copy", 0.0),
    ("person-heavy.mp4", "one-by-one-person-detection.mp4", ["-crf", "45"], "heavily compressed", "copy", 0.0),
    ("bottle-cropped.mp4", "bottle-detection.mp4", ["-vf", "crop=iw*0.9:ih*0.9:iw*0.1:0"], "10% cropped",
     "copy", 0.0),
    ("car-colour.mp4", "car-detection.mp4", ["-vf", "eq=saturation=1.6:brightness=0.06:gamma_r=1.2"],
     "colour-shifted", "copy", 0.0),
    ("bottle-mirrored.mp4", "bottle-detection.mp4", ["-vf", "hflip"], "mirrored", "copy", 0.0),
    ("person-watermarked.mp4", "one-by-one-person-detection.mp4",
     ["-vf", WATERMARK], "watermarked", "copy", 0.0),
]
CLIP = ("bottle-clip-720p.mp4", "bottle-detection.mp4", 21.7, 5.3)  # name, source, start, seconds
COMPILATION = ("compilation.mp4", [("car-detection.mp4", 6.0, 5.0), ("one-by-one-person-detection.mp4", 60.0, 6.0)])
LOOP = ("help-twice.mp4", "asl_gestures/help.mkv")


def ffmpeg(*arguments):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, arguments)], check=True)


def probe(path, entries, *extra):
    return subprocess.run(["ffprobe", "-v", "error", *extra, "-select_streams", "v", "-show_entries", entries,
                           "-of", "csv=p=0", path], check=True, capture_output=True, text=True).stdout.strip()


def frame_count(path):
    return int(probe(path, "stream=nb_read_frames", "-count_frames"))


def frame_rate(path):
    numerator, _, denominator = probe(path, "stream=r_frame_rate").partition("/")
    return float(numerator) / float(denominator or 1)


def make_videos(media, out, truth):
    videos = out / "videos"
    shutil.copytree(media, videos, ignore=shutil.ignore_patterns("LICENSE*", "*.md"))
    for name, source, arguments, transform, kind, start in VIDEO_COPIES:
        ffmpeg("-i", media / source, *arguments, "-an", videos / name)
        truth.append({"a": name, "b": source, "kind": kind, "transform": transform, "b_start": start})
    name, source, start, seconds = CLIP
    ffmpeg("-ss", start, "-i", media / source, "-t", seconds, "-vf", "scale=1280:720,fps=25", "-an", videos / name)
    truth.append({"a": name, "b": source, "kind": "contained", "transform": "cut, 1280x720, 25 fps",
                  "b_start": start})
    name, parts = COMPILATION
    inputs, filters, at = [], [], 0.0
    for number, (source, start, seconds) in enumerate(parts):
        inputs += ["-ss", start, "-t", seconds, "-i", media / source]
        filters.append(f"[{number}:v]scale=640:360,setsar=1,fps=25[v{number}]")
        truth.append({"a": source, "b": name, "kind": "contains", "transform": "a stretch of a compilation",
                      "a_start": start, "seconds": seconds, "b_start": at})
        at += seconds
    ffmpeg(*inputs, "-filter_complex", ";".join(filters) + ";" + "".join(f"[v{n}]" for n in range(len(parts)))
           + f"concat=n={len(parts)}:v=1:a=0", "-an", videos / name)
    name, source = LOOP
    ffmpeg("-stream_loop", 1, "-i", media / source, "-an", videos / name)
    truth.append({"a": source, "b": name, "kind": "contained", "transform": "a loop: the clip twice",
                  "b_start": [0.0, frame_count(media / source) / frame_rate(media / source)]})
    ffmpeg("-ss", 30, "-i", media / "one-by-one-person-detection.mp4", "-t", 0.3, "-an", videos / "person-blink.mp4")
    truth.append({"a": "person-blink.mp4", "b": "one-by-one-person-detection.mp4", "kind": "contained",
                  "transform": "one sampled frame", "b_start": 30.0})
    for name, at in (("bottle-still-a.mp4", 5.0), ("bottle-still-b.mp4", 30.0)):  # a still is at no one offset
        ffmpeg("-ss", at, "-i", media / "bottle-detection.mp4", "-frames:v", 1, out / "still.png")
        ffmpeg("-loop", 1, "-i", out / "still.png", "-t", 6, "-r", 25, "-pix_fmt", "yuv420p", videos / name)
        (out / "still.png").unlink()
        truth.append({"a": name, "b": "bottle-detection.mp4", "kind": "contained", "transform": "a still of one frame",
                      "b_start": None, "shows": at})
    for gif, start in GIF_STARTS.items():
        truth.append({"a": f"preview/{gif}.gif", "b": f"{gif}.mp4", "kind": "contained",
                      "transform": "GIF preview (excerpt)", "b_start": start})


PHOTO_VARIANTS = [  # (suffix, ffmpeg arguments, transform, counted in the aim)
    ("reencoded", ["-q:v", "20"], "re-encoded (JPEG quality ~35)", True),
    ("half", ["-vf", "scale=iw/2:ih/2"], "resized to half", True),
    ("cropped", ["-vf", "crop=iw*0.9:ih*0.9:iw*0.05:ih*0.1"], "10% crop", True),
    ("colour", ["-vf", "eq=saturation=1.5:gamma_b=1.3"], "colour-shifted", False),
    ("mirrored", ["-vf", "hflip"], "mirrored", False),
    ("watermarked", ["-vf", WATERMARK], "watermarked", False),
]


def make_photos(media, out, truth, spacing=5.0):
    photos = out / "photos"
    photos.mkdir()
    originals = []
    for video in sorted(media.rglob("*")):
        if video.suffix not in (".mp4", ".mkv", ".gif"):
            continue
        duration = float(probe(video, "format=duration"))
        at = min(duration / 2, 1.0)
        while at < duration - 0.2:
            name = f"{video.stem}{video.suffix.replace('.', '-')}-{at:05.1f}s.jpg"
            ffmpeg("-ss", at, "-i", video, "-frames:v", 1, "-q:v", 2, photos / name)
            originals.append(name)
            at += spacing
    for number, name in enumerate(originals):
        if number % 2:
            continue
        for suffix, arguments, transform, aimed in PHOTO_VARIANTS:
            copy = name.replace(".jpg", f"-{suffix}.jpg")
            quality = [] if "-q:v" in arguments else ["-q:v", 3]
            ffmpeg("-i", photos / name, *arguments, *quality, photos / copy)
            truth.append({"a": copy, "b": name, "kind": "copy", "transform": transform, "aimed": aimed})
    for name in originals[1:12:2][:5]:
        copy = name.replace(".jpg", "-exact.jpg")
        shutil.copyfile(photos / name, photos / copy)
        truth.append({"a": copy, "b": name, "kind": "exact", "transform": "exact copy", "aimed": True})
    return originals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--media", type=Path, default=SAMPLES)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new folder")
    args.out.mkdir(parents=True)
    videos, photos = [], []
    make_videos(args.media, args.out, videos)
    originals = make_photos(args.media, args.out, photos)
    (args.out / "videos-truth.json").write_text(json.dumps(videos, indent=1))
    (args.out / "photos-truth.json").write_text(json.dumps(photos, indent=1))
    print(f"{args.out}: {len(videos)} video copy pair(s); {len(originals)} photo(s) and {len(photos)} copies of them")


if __name__ == "__main__":
    main()
