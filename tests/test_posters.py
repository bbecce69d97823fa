"""Posters' pure parts: parameters, the assignment of frames to cells, rendering to PNG,
TIFF and PDF, and reading the source's own frames at exact timestamps."""
import re

import numpy as np
import pytest

from tests.media import ffmpeg
from workers.pipeline.posters import (BACKGROUND, LIMITS, PosterError, PosterSpec, assign_frames, cells_in_reach,
                                      fills_a_cell, render_poster)
from workers.pipeline.sampling import MediaError, full_resolution_frames


def spec(**changes):
    values = dict(centre_x=0.0, centre_y=0.0, window_width=1.0, columns=4, rows=3, tile_width=64, tile_height=36)
    return PosterSpec(**{**values, **changes})


def test_impossible_parameters_are_refused_with_every_reason():
    assert spec().problems(10**9) == []
    with pytest.raises(PosterError, match="columns and rows must be 1 to"):
        spec(columns=0).validate(10**9)
    with pytest.raises(PosterError, match="lies outside the map"):
        spec(centre_x=3.0).validate(10**9)
    with pytest.raises(PosterError, match="more than the limit of 1,000"):
        spec().validate(1000)
    reasons = spec(format="gif", quality="best", window_width=-1).problems(10**9)
    assert len(reasons) == 3 and "format must be one of png, tiff, pdf (got 'gif')" in reasons
    assert spec(centre_x=float("nan")).problems(10**9) == ["centre_x must be a finite number, not nan"]
    with pytest.raises(PosterError, match="unknown poster parameter.*colour"):
        PosterSpec.from_dict({**spec().as_dict(), "colour": "red"})
    with pytest.raises(PosterError, match="missing poster parameter.*columns"):
        PosterSpec.from_dict({"centre_x": 0, "centre_y": 0, "window_width": 1, "rows": 2})
    # Rotated by 45 degrees, a window beside the map still reaches into it.
    assert spec(centre_x=1.6, window_width=1.0, columns=1, rows=1, rotation=45).problems(10**9) == []


def test_every_number_has_a_range_and_the_cells_a_cap():
    # Found by the fuzzer: 1 mm at 10 dpi is no pixel at all (and its size in mm divided by zero).
    assert spec(width_mm=1.0, dpi=10.0).problems(10**9) == [
        "0 x 1 pixels cannot hold 4 x 3 cells (width_mm and dpi make it that small)"]
    assert spec(columns=200, rows=200).problems(10**12, max_cells=40_000) == []
    assert spec(columns=201, rows=200).problems(10**12, max_cells=40_000) == [
        "201 x 200 cells is more than the limit of 40,000 (POSTER_MAX_CELLS)"]
    for name, (low, high) in LIMITS.items():
        step = 1 if isinstance(low, int) else (high - low) * 1e-3
        base = dict(window_width=20.0, columns=1, rows=1) if name.startswith("centre") else {}  # reaching the map
        for value in (low, high):
            assert spec(**{**base, name: value}).problems(10**15) == [], (name, value)
        for value in (low - step, high + step):
            [reason] = spec(**{**base, name: value}).problems(10**15)
            assert reason.startswith((name, "tiles", "columns and rows")), reason


def test_the_article_poster_and_a_print_size_in_pixels():
    article = spec(columns=11, rows=18, tile_width=534, tile_height=300)
    assert article.pixel_size == (5874, 5400)
    metre = spec(columns=11, rows=18, tile_width=534, tile_height=300, width_mm=1000, dpi=300)
    assert metre.pixel_size == (11811, round(11811 * 5400 / 5874))
    assert metre.size_mm[0] == 1000 and metre.size_mm[1] == pytest.approx(1000 * 5400 / 5874, rel=1e-3)


def test_each_cell_gets_the_frame_at_its_centre_and_no_frame_twice():
    poster = spec(columns=5, rows=4, window_width=1.0, rotation=30)
    centres = poster.cell_centres().reshape(-1, 2)
    rng = np.random.default_rng(0)
    far = rng.uniform(0.9, 1.0, (30, 2))  # far outside the window
    xy = np.concatenate([far, centres + rng.normal(0, 0.001, centres.shape)])
    shown = assign_frames(poster, xy)
    assert shown.shape == (4, 5)
    assert shown.reshape(-1).tolist() == list(range(30, 50))

    # Forty frames crowded around one cell: they spread to the cells around it, each
    # frame once, nearest cells first, and cells out of reach stay blank.
    crowd = np.repeat(centres[7][None], 40, axis=0) + rng.normal(0, 0.01, (40, 2))
    shown = assign_frames(poster, crowd)
    used = shown[shown >= 0]
    assert len(used) == len(set(used.tolist())) and 1 < len(used) < 20
    distance = np.hypot(*(poster.cell_centres()[shown >= 0] - centres[7]).T)
    assert distance.max() <= 0.2 + 0.01 + 1e-9  # within one cell's width of the crowd
    # "nearest" fills every cell, still with each frame once.
    filled = assign_frames(spec(columns=5, rows=4, empty="nearest"), crowd)
    assert (filled >= 0).all() and len(set(filled.reshape(-1).tolist())) == 20

    # The cheap check before a render agrees: frames in reach fill a cell, far ones do not.
    assert fills_a_cell(poster, xy) and fills_a_cell(poster, crowd)
    assert not fills_a_cell(poster, far) and (assign_frames(poster, far) < 0).all()
    assert fills_a_cell(spec(columns=5, rows=4, empty="nearest"), far)

    # Without solving the assignment, an upper bound of the cells it fills.
    nearest = spec(columns=5, rows=4, empty="nearest")
    for poster_, frames in [(poster, xy), (poster, crowd), (poster, far), (nearest, crowd)]:
        assert cells_in_reach(poster_, frames) >= int((assign_frames(poster_, frames) >= 0).sum())
    assert cells_in_reach(poster, xy) == 20 and cells_in_reach(poster, far) == 0
    assert cells_in_reach(nearest, far) == 20


def colour_frames(n):
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    return np.repeat(colours[:, None, None, :], 300 * 534, axis=1).reshape(n, 300, 534, 3), colours


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_a_poster_image_has_exact_dimensions_and_each_cell_its_frame(tmp_path, fmt):
    import pyvips

    frames, colours = colour_frames(12)
    poster = spec(columns=4, rows=3, tile_width=60, tile_height=34, format=fmt, dpi=150)
    assignment = np.arange(12).reshape(3, 4)[::-1].copy()
    assignment[1, 2] = -1  # a blank cell

    def fetch(cells):
        for cell, row in reversed(cells):  # any order
            yield cell, frames[row]

    out = tmp_path / f"poster.{fmt}"
    assert render_poster(poster, assignment, fetch, out, tmp_path / "work") == (240, 102, 11)
    image = pyvips.Image.new_from_file(str(out))
    assert (image.width, image.height, image.bands) == (240, 102, 3)
    assert image.xres == pytest.approx(150 / 25.4)
    pixels = np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(102, 240, 3))
    for row in range(3):
        for column in range(4):
            inner = pixels[row * 34 + 3:(row + 1) * 34 - 3, column * 60 + 3:(column + 1) * 60 - 3]
            expected = BACKGROUND if assignment[row, column] < 0 else colours[assignment[row, column]]
            assert np.abs(inner.astype(int) - expected).max() <= 1, (row, column)
    assert list((tmp_path / "work").iterdir()) == []  # scratch files are gone


def test_a_pdf_poster_has_the_requested_page_size_and_resolution(tmp_path):
    frames, _ = colour_frames(6)
    poster = spec(columns=3, rows=2, width_mm=200, dpi=72, format="pdf")
    width, height, _ = render_poster(poster, np.arange(6).reshape(2, 3), lambda cells: ((c, frames[r]) for c, r in cells),
                                  tmp_path / "poster.pdf", tmp_path / "work")
    assert width == round(200 / 25.4 * 72)
    data = (tmp_path / "poster.pdf").read_bytes()
    box = [float(v) for v in re.search(rb"/MediaBox \[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", data).groups()]
    assert box[2] - box[0] == pytest.approx(200 / 25.4 * 72, abs=0.01)
    assert box[3] - box[1] == pytest.approx(poster.size_mm[1] / 25.4 * 72, abs=0.01)
    assert int(re.search(rb"/Width (\d+)", data).group(1)) == width  # so width / page inches == dpi
    assert int(re.search(rb"/Height (\d+)", data).group(1)) == height


def numbered_video(path, frames=90, size="640x360", rate=30):
    """Frame n is a flat grey of luma 2n + 20: its number can be read from its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"nullsrc=size={size}:rate={rate},geq=lum='2*N+20':cb=128:cr=128",
           "-frames:v", frames, "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-crf", "10",
           "-pix_fmt", "yuv420p", path)
    return path


def grey_of(frame):
    """The RGB level of frame `frame` of a numbered video (video-range luma to full range)."""
    return (2 * frame + 20 - 16) * 255 / 219


def test_full_resolution_frames_are_the_frames_at_those_exact_times(tmp_path):
    video = numbered_video(tmp_path / "numbered.mp4")
    wanted = [2.0, 0.0, 1.0 / 30 * 47, 1.0 / 30 * 13]  # frames 60, 0, 47, 13, in any order
    got = list(full_resolution_frames(video, wanted))
    assert [t for t, _ in got] == sorted(wanted)
    for time, pixels in got:
        assert pixels.shape == (360, 640, 3)
        frame = round(time * 30)
        assert abs(float(pixels.mean()) - grey_of(frame)) < 2, (time, pixels.mean())
    with pytest.raises(MediaError, match="the file ends before it"):
        list(full_resolution_frames(video, [99.0]))
    with pytest.raises(MediaError, match="no longer there"):
        list(full_resolution_frames(tmp_path / "gone.mp4", [0.0]))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(MediaError, match="broken.mp4: no longer decodes"):
        list(full_resolution_frames(broken, [0.0]))
