"""Cut-outs (workers/pipeline/cutouts.py) on generated frames whose true mask is known, and
the scatter poster that places them (workers/pipeline/scatter.py)."""
import cv2
import numpy as np
import pytest

from workers.pipeline.cutouts import BACKGROUNDS, cut_out, mask_iou, read_cutout, write_cutout

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
