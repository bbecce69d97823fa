"""How long copy detection takes as the collection grows, on generated frames (no media or
weights needed): files of 100 frames half a second apart, each a random walk of PCA vectors,
of which --copies of the files are copies of a stretch of another (its vectors plus noise).
Frames are generated pictures (tests/media.py shapes_picture), made only when compared, as
the stage reads only the frames it compares from the frame store: a first detection draws
them and keeps them in memory, the second is timed (reading a kept picture, as the stage
reads a frame from its store, costs next to nothing). Their ground's blotches are BLOTCH
pixels wide, so that describing one (ORB) costs about what a real frame costs; --texture-of
FOLDER prints both side by side, the generated pictures against frames of the videos there
(the tests' pictures, blotches of 6 pixels, cost twice a real frame).

Prints the seconds of the candidate search alone and of the whole detection, the frames
described and the pairs of files aligned, and what it found. Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_copies_speed.py [--frames 100000] [--copies 0.05] [--threads N]
        [--texture-of FOLDER]
"""
import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.media import shapes_picture  # noqa: E402
from workers.pipeline import copies  # noqa: E402
from workers.pipeline.frame_match import frame_points  # noqa: E402

FRAMES_A_FILE = 100
BLOTCH = 24  # pixels: ORB took 9.4 ms on these pictures, 8.7 ms on frames of the sample videos (median)


def generated_collection(frames, copied_share, seed=0):
    """(vectors, Files, content of each row: the row whose picture it shows, true copy pairs:
    every two files that show a same picture, two copies of one original among them)."""
    rng = np.random.default_rng(seed)
    files = frames // FRAMES_A_FILE
    vectors = (rng.normal(size=(files, 1, 256)) * 3.0
               + np.cumsum(rng.normal(size=(files, FRAMES_A_FILE, 256)) * 0.15, axis=1)).reshape(-1, 256)
    content = np.arange(len(vectors))
    for copy in rng.choice(files, int(files * copied_share), replace=False):
        original = int(rng.integers(files))
        if original == copy:
            continue
        start, length = int(rng.integers(0, 50)), int(rng.integers(20, 50))  # a stretch of the original
        rows = copy * FRAMES_A_FILE + np.arange(length)
        source_rows = original * FRAMES_A_FILE + start + np.arange(length)
        vectors[rows] = vectors[source_rows] + rng.normal(size=(length, 256)) * 0.3
        content[rows] = content[source_rows]
    sources = np.repeat(np.arange(files), FRAMES_A_FILE)
    showing = {}  # content: the files that show it (a row copied over later shows the other's)
    for row, shown in enumerate(content.tolist()):
        showing.setdefault(shown, set()).add(int(sources[row]))
    pairs = {(a, b) for shown_by in showing.values() for a in shown_by for b in shown_by if a < b}
    times = np.tile(np.arange(FRAMES_A_FILE) * 0.5, files)
    return vectors.astype(np.float32), copies.Files(sources, times), content, pairs


def print_description_costs(folder, pictures=20):
    """Milliseconds ORB takes on a frame (median) of the videos in `folder` (a second in, at the
    generated pictures' size) and on the generated pictures, side by side."""
    from workers.pipeline.images import fit_size, resize
    from workers.pipeline.sampling import MediaError, full_resolution_frames

    def median_ms(images):
        timings = []
        for image in images:
            started = time.perf_counter()
            frame_points(image)
            timings.append((time.perf_counter() - started) * 1000)
        return np.median(timings)

    real = []
    for video in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mp4", ".mkv", ".avi", ".mov", ".webm")):
        try:
            real += [resize(pixels, *fit_size(pixels.shape[1], pixels.shape[0], 534, 300))
                     for _, pixels in full_resolution_frames(video, [1.0])]
        except MediaError as exc:  # too short, or does not decode
            print(f"left out {video}: {exc}")
    if not real:
        raise SystemExit(f"no video frame to time in {folder}")
    generated = [shapes_picture(seed, blotch=blotch) for blotch in (BLOTCH, 6) for seed in range(pictures)]
    print(f"describing a frame: {median_ms(real):.1f} ms on {len(real)} video frames of {folder}, "
          f"{median_ms(generated[:pictures]):.1f} ms on the generated pictures (blotches of {BLOTCH} px), "
          f"{median_ms(generated[pictures:]):.1f} ms on the tests' (6 px)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--copies", type=float, default=0.05, help="share of the files that copy another")
    parser.add_argument("--threads", type=int, help="threads aligning pairs of files (default: a thread a core)")
    parser.add_argument("--texture-of", type=Path, help="a folder of videos: describing their frames, timed beside "
                        "describing the generated pictures")
    args = parser.parse_args()
    if args.texture_of:
        print_description_costs(args.texture_of)
    vectors, files, content, pairs = generated_collection(args.frames, args.copies)

    pictures = {}  # content: picture, drawn by a first detection (the stage reads its frames from a store)

    def picture_of(row):
        if int(content[row]) not in pictures:
            pictures[int(content[row])] = shapes_picture(int(content[row]), blotch=BLOTCH)
        return pictures[int(content[row])]

    copies.find_stretches(vectors, files, lambda row: frame_points(picture_of(row)))

    @functools.lru_cache(maxsize=1024)  # as the stage's cache
    def points_of(row):
        return frame_points(picture_of(row))

    started = time.perf_counter()
    rows_a, _, _ = copies.candidate_matches(copies.unit_rows(vectors), files)
    search = time.perf_counter() - started
    started = time.perf_counter()
    stretches = copies.find_stretches(vectors, files, points_of, threads=args.threads)
    whole = time.perf_counter() - started
    found = {(min(s.a, s.b), max(s.a, s.b)) for s in stretches if s.score >= 0.5}
    wanted = pairs
    print(f"{len(vectors)} frames of {len(vectors) // FRAMES_A_FILE} files, {len(wanted)} pairs of them copies: "
          f"candidate search "
          f"{search:.1f} s ({len(rows_a)} candidate frame pairs), whole detection {whole:.1f} s "
          f"({points_of.cache_info().misses} frames described, {len(pictures)} pictures drawn before)")
    print(f"found {len(found & wanted)} of {len(wanted)} copies, {len(found - wanted)} pair(s) wrongly")


if __name__ == "__main__":
    main()
