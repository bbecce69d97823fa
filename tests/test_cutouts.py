"""Cut-outs (workers/pipeline/cutouts.py) on generated frames whose true mask is known, and
the scatter poster that places them (workers/pipeline/scatter.py)."""
import cv2
import numpy as np
import pytest

from workers.pipeline.cutouts import BACKGROUNDS, cut_out, mask_iou, read_cutout, write_cutout
from workers.pipeline.posters import PosterError, PosterSpec
from workers.pipeline.scatter import MAX_SPRITES_PER_CELL, box_size, map_to_pixels, place_scatter, render_scatter

SUBJECT, BACKDROP = (200, 40, 50), (90, 140, 200)


def star(cx, cy, outer, inner, points=5):
    angles = np.arange(2 * points) * np.pi / points - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).round().astype(np.int32)


def shape_frame(shape, backdrop, width=320, height=180, noise=4.0, seed=0):
    """(RGB frame, true mask): a shape of one colour on a plain backdrop or on one graded
    left to right over 40 levels, with Gaussian noise of `noise` levels on every pixel."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = BACKDROP
    if backdrop == "graded":
        image += np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    mask = np.zeros((height, width), np.uint8)
    if shape == "disc":
        cv2.circle(mask, (width // 2, height // 2), 55, 1, -1)
    elif shape == "rectangle":
        cv2.rectangle(mask, (90, 40), (220, 140), 1, -1)
    else:
        cv2.fillPoly(mask, [star(width // 2, height // 2, 75, 32)], 1)
    image[mask.astype(bool)] = SUBJECT
    image += rng.normal(0, noise, image.shape)
    return np.clip(image.round(), 0, 255).astype(np.uint8), mask.astype(bool)


@pytest.mark.parametrize("shape", ["disc", "rectangle", "star"])
@pytest.mark.parametrize("backdrop, background", [("plain", "corners"), ("plain", "first-pixel"),
                                                  ("graded", "corners")])
@pytest.mark.parametrize("use_position", [False, True])
def test_the_cut_out_is_the_shape(shape, backdrop, background, use_position):
    pixels, truth = shape_frame(shape, backdrop)
    rgba = cut_out(pixels, background=background, use_position=use_position)
    assert rgba.shape == (180, 320, 4) and rgba.dtype == np.uint8
    assert (rgba[..., :3] == pixels).all()  # the colours are the frame's own
    assert set(np.unique(rgba[..., 3]).tolist()) <= {0, 255}
    assert mask_iou(rgba[..., 3] > 0, truth) >= 0.95


def test_a_subject_touching_the_edge_stays_and_a_low_contrast_one_is_found():
    pixels, truth = shape_frame("rectangle", "graded", noise=10.0)
    pixels[140:, 130:190] = SUBJECT  # the subject stands on the frame's bottom edge: 6% of the ring
    truth[140:, 130:190] = True
    assert mask_iou(cut_out(pixels)[..., 3] > 0, truth) >= 0.95


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_a_frame_that_is_all_background_comes_out_transparent(background):
    flat = np.full((90, 160, 3), 77, np.uint8)
    noisy = np.clip(np.random.default_rng(0).normal(128, 6, (90, 160, 3)), 0, 255).astype(np.uint8)
    graded = np.repeat(np.linspace(60, 100, 160).astype(np.uint8)[None, :, None], 90, 0).repeat(3, 2)
    frames = [flat, noisy, np.zeros((1, 1, 3), np.uint8), np.zeros((2, 5, 3), np.uint8)]
    # The first pixel is one end of a gradient: only the border follows it to the other end.
    for pixels in frames + ([graded] if background == "corners" else []):
        rgba = cut_out(pixels, background=background)
        assert rgba.shape == pixels.shape[:2] + (4,) and not rgba[..., 3].any()


def test_letterbox_bars_are_transparent():
    pixels, truth = shape_frame("disc", "plain")
    boxed = np.zeros((300, 534, 3), np.uint8)  # the frame store's black bars above and below
    boxed[60:240] = cv2.resize(pixels, (534, 180), interpolation=cv2.INTER_NEAREST)
    boxed_truth = np.zeros((300, 534), bool)
    boxed_truth[60:240] = cv2.resize(truth.astype(np.uint8), (534, 180), interpolation=cv2.INTER_NEAREST) > 0
    alpha = cut_out(boxed)[..., 3]
    assert not alpha[:60].any() and not alpha[240:].any()
    assert mask_iou(alpha > 0, boxed_truth) >= 0.95


def test_the_same_frame_gives_the_same_cut_out():
    pixels, _ = shape_frame("star", "graded")
    assert (cut_out(pixels, seed=3) == cut_out(pixels, seed=3)).all()


def test_bad_parameters_are_refused():
    pixels, _ = shape_frame("disc", "plain")
    for kwargs, message in [(dict(background="middle"), "background must be one of corners, first-pixel"),
                            (dict(clusters=1), "clusters must be a whole number from 2 to 16"),
                            (dict(clusters=2.5), "clusters must be")]:
        with pytest.raises(ValueError, match=message):
            cut_out(pixels, **kwargs)
    with pytest.raises(ValueError, match="RGB uint8"):
        cut_out(pixels[..., 0])


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0
    a[:2], b[1:3] = True, True
    assert mask_iou(a, b) == pytest.approx(1 / 3)


def test_a_cut_out_keeps_its_alpha_through_a_png(tmp_path):
    pixels, _ = shape_frame("star", "plain")
    rgba = cut_out(pixels)
    write_cutout(tmp_path / "frame.png", rgba)
    assert (read_cutout(tmp_path / "frame.png") == rgba).all()
    assert [p.name for p in tmp_path.iterdir()] == ["frame.png"]  # no temporary file left
    cv2.imwrite(str(tmp_path / "opaque.png"), pixels[..., ::-1])
    opaque = read_cutout(tmp_path / "opaque.png")
    assert (opaque[..., :3] == pixels).all() and (opaque[..., 3] == 255).all()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not an 8-bit PNG"):
        read_cutout(tmp_path / "broken.png")


# --- scatter posters ---------------------------------------------------------------------

def scatter_spec(**changes):
    values = dict(centre_x=0.0, centre_y=0.0, window_width=1.0, columns=4, rows=3, tile_width=64, tile_height=36,
                  mode="scatter", overlap=0.1, background="transparent")
    return PosterSpec(**{**values, **changes})


def test_a_frame_is_placed_at_its_map_coordinates():
    # 256 x 108 pixels over a window 1 wide and 0.75 high, centred on the map's origin.
    placed = place_scatter(scatter_spec(), [[0.0, 0.0], [0.25, 0.125], [0.7, 0.0], [np.nan, 0.0]])
    assert placed == [(0, 128.0, 54.0), (1, 192.0, pytest.approx(36.0))]  # the rest lies outside
    for rotation in (0, 30, 90, -135):
        poster = scatter_spec(rotation=rotation, centre_x=0.2, centre_y=-0.1)
        rows, columns = np.mgrid[0:3, 0:4]
        # The cells' centres of the same window fall where the grid draws them.
        assert np.allclose(map_to_pixels(poster, poster.cell_centres().reshape(-1, 2)),
                           np.stack([(columns.ravel() + 0.5) * 64, (rows.ravel() + 0.5) * 36], axis=1))
    turned = scatter_spec(rotation=90, overlap=1.0)
    assert [row for row, _, _ in place_scatter(turned, [[0.0, 0.25], [0.3, 0.0], [0.45, 0.0]])] == [0, 1]
    assert place_scatter(turned, [[0.0, 0.25]])[0][1:] == pytest.approx((192.0, 54.0))


def crowd(n=3000, seed=2):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 0.12, (n // 2, 2)), rng.uniform(-0.7, 0.7, (n - n // 2, 2))])


def covered_by(box, others, step=0.25):
    """The share of `box` (x, y, w, h centred) that the union of `others` covers, on a grid
    of `step` pixels: a check of the placement's exact arithmetic by another way."""
    x, y, w, h = box
    gx, gy = np.meshgrid(np.arange(x - w / 2 + step / 2, x + w / 2, step),
                         np.arange(y - h / 2 + step / 2, y + h / 2, step))
    hit = np.zeros(gx.shape, bool)
    for ox, oy in others:
        hit |= (np.abs(gx - ox) < w / 2) & (np.abs(gy - oy) < h / 2)
    return hit.mean()


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.4])
def test_no_placed_box_is_hidden_more_than_the_overlap(overlap):
    poster = scatter_spec(overlap=overlap, columns=16, rows=12, tile_width=20, tile_height=12)
    xy = crowd()
    placed = place_scatter(poster, xy)
    box_w, box_h = box_size(poster)
    centres = np.array([(x, y) for _, x, y in placed])
    assert 10 < len(placed) < len(xy) and len({row for row, _, _ in placed}) == len(placed)
    dx = np.abs(centres[:, None, 0] - centres[None, :, 0])
    dy = np.abs(centres[:, None, 1] - centres[None, :, 1])
    pair = np.clip(box_w - dx, 0, None) * np.clip(box_h - dy, 0, None) / (box_w * box_h)
    np.fill_diagonal(pair, 0)
    assert pair.max() <= overlap + 1e-9
    for i in range(1, len(placed)):  # each box against the union of those above it
        near = [c for c in centres[:i] if abs(c[0] - centres[i][0]) < box_w and abs(c[1] - centres[i][1]) < box_h]
        assert covered_by((*centres[i], box_w, box_h), near) <= overlap + 0.01
    # The frame nearest the window's centre is placed first, and the poster the same every time.
    assert placed[0][0] == int(np.argmin(np.hypot(*xy.T))) and place_scatter(poster, xy) == placed


def test_overlap_1_keeps_the_frames_in_the_window_nearest_its_centre_up_to_the_cap():
    xy = crowd()
    inside = (np.abs(xy[:, 0]) <= 0.5) & (np.abs(xy[:, 1]) <= 0.375)
    roomy = scatter_spec(overlap=1.0, columns=40, rows=30, window_width=1.0)  # room for every frame inside
    assert MAX_SPRITES_PER_CELL * 40 * 30 > inside.sum()
    assert sorted(row for row, _, _ in place_scatter(roomy, xy)) == np.flatnonzero(inside).tolist()
    # Past MAX_SPRITES_PER_CELL a cell, the frames nearest the window's centre.
    capped = place_scatter(scatter_spec(overlap=1.0, columns=2, rows=1, window_width=1.0), xy)
    assert len(capped) == min(2 * MAX_SPRITES_PER_CELL, inside.sum())
    distance = np.hypot(*xy.T)
    assert max(distance[[row for row, _, _ in capped]]) <= min(distance[inside & ~np.isin(
        np.arange(len(xy)), [row for row, _, _ in capped])], default=np.inf)
    assert place_scatter(scatter_spec(), np.empty((0, 2))) == []


def disc_sprite(colour, size=(72, 128)):
    rgba = np.zeros((*size, 4), np.uint8)
    rgba[..., :3] = 255 - np.array(colour, np.uint8)  # the colour under alpha 0 must not show
    mask = np.zeros(size, np.uint8)
    cv2.circle(mask, (size[1] // 2, size[0] // 2), size[0] // 2 - 2, 1, -1)
    rgba[mask > 0] = (*colour, 255)
    return rgba


def read_rgba(path):
    import pyvips

    image = pyvips.Image.new_from_file(str(path))
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands))


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_a_transparent_scatter_poster_shows_its_cut_outs_where_they_are_placed(tmp_path, fmt):
    poster = scatter_spec(format=fmt, overlap=1.0)
    placements = place_scatter(poster, [[0.0, 0.0], [0.125, 0.0], [-0.375, 0.25], [0.375, -0.25]])
    colours = {0: (250, 10, 10), 1: (10, 250, 10), 2: (10, 10, 250), 3: (0, 0, 0)}

    def fetch(items):
        for i, row in reversed(items):  # any order
            yield i, None if row == 3 else disc_sprite(colours[row])

    out = tmp_path / f"scatter.{fmt}"
    assert render_scatter(poster, placements, fetch, out, tmp_path / "work") == (256, 108, 3)
    pixels = read_rgba(out)
    assert pixels.shape == (108, 256, 4)
    assert (pixels[54, 112] == (250, 10, 10, 255)).all()  # frame 0 and 1 overlap: 0, placed first, is on top
    assert (pixels[54, 150] == (10, 250, 10, 255)).all()
    assert (pixels[18, 32] == (10, 10, 250, 255)).all()  # (-0.375, 0.25): x (0.125) * 256, y (0.5 - 1/3) * 108
    assert not pixels[1, 1, 3] and not pixels[18, 2, 3]  # beside the disc, inside its box: transparent
    assert not pixels[90, 224, 3]  # the frame whose cut-out was missing
    drawn = np.zeros((108, 256), bool)
    for _, x, y in placements[:3]:
        drawn[max(0, int(y) - 18):int(y) + 18, max(0, int(x) - 32):int(x) + 32] = True
    assert not pixels[~drawn][:, 3].any()  # away from the sprites, nothing
    assert list((tmp_path / "work").iterdir()) == []  # scratch files are gone


def test_a_coloured_background_fills_the_poster(tmp_path):
    poster = scatter_spec(background="#102030", format="png")
    placements = place_scatter(poster, [[0.0, 0.0]])
    render_scatter(poster, placements, lambda items: ((i, disc_sprite((250, 10, 10))) for i, _ in items),
                   tmp_path / "scatter.png", tmp_path / "work")
    pixels = read_rgba(tmp_path / "scatter.png")
    assert pixels.shape == (108, 256, 3)
    assert (pixels[2, 2] == (16, 32, 48)).all() and (pixels[40, 112] == (16, 32, 48)).all()  # beside the disc too
    assert (pixels[54, 128] == (250, 10, 10)).all()


def test_scatter_parameters_are_refused_with_their_reason():
    assert scatter_spec().problems(10**9) == [] and scatter_spec(background="#A0b0C0").problems(10**9) == []
    with pytest.raises(PosterError, match="a PDF poster cannot be transparent"):
        scatter_spec(format="pdf").validate(10**9)
    assert scatter_spec(format="pdf", background="white").problems(10**9) == []
    assert scatter_spec(mode="grid", background="transparent").problems(10**9) == [
        "a grid poster is on white paper: background 'transparent' is for scatter posters"]
    assert scatter_spec(background="#12345").problems(10**9) == [
        "background must be white, transparent or a colour as #rrggbb (got '#12345')"]
    assert scatter_spec(mode="cloud").problems(10**9) == ["mode must be one of grid, scatter (got 'cloud')"]
    assert scatter_spec(overlap=1.5).problems(10**9) == ["overlap must be 0 to 1 (got 1.5)"]
    assert scatter_spec(overlap=None).problems(10**9) == ["overlap must be a finite number, not None"]
    assert PosterSpec.from_dict({**scatter_spec().as_dict()}) == scatter_spec()


def test_the_canvas_in_many_bands_is_the_canvas_in_one(tmp_path, monkeypatch):
    import workers.pipeline.scatter as scatter

    poster = scatter_spec(overlap=0.5)
    placements = place_scatter(poster, crowd(200))
    rng = np.random.default_rng(3)
    sprites = {row: disc_sprite(tuple(rng.integers(0, 256, 3).tolist())) for row, _, _ in placements}

    def fetch(items):
        return ((i, sprites[row]) for i, row in items)

    render_scatter(poster, placements, fetch, tmp_path / "one.png", tmp_path / "work")
    monkeypatch.setattr(scatter, "BAND_BYTES", 256 * 16 * 7)  # bands of 7 rows: sprites cross several
    render_scatter(poster, placements, fetch, tmp_path / "bands.png", tmp_path / "work")
    assert (read_rgba(tmp_path / "one.png") == read_rgba(tmp_path / "bands.png")).all()
    assert read_rgba(tmp_path / "one.png")[..., 3].any()
