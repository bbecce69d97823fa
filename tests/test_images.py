"""The shared pixel operations (workers/pipeline/images.py), on fixed inputs."""
import cv2
import numpy as np
import pytest
from PIL import Image

from workers.pipeline.images import (
    JPEG_QUALITY, encode_jpeg, fit_size, left_and_right_squares, letterbox, letterbox_photo, resize, resize_area,
)

RED, BLUE, PAPER = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def decoded(jpeg):
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def content_box(image, background):
    """(top, bottom, left, right) of the pixels that are not the background colour."""
    rows, columns = np.nonzero((image != background).any(axis=-1))
    return rows.min(), rows.max() + 1, columns.min(), columns.max() + 1


@pytest.mark.parametrize("size, box, expected", [
    ((1920, 1080), (534, 300), (533, 300)),  # 16:9 into 89:50: height-limited
    ((1080, 1920), (534, 300), (169, 300)),  # portrait
    ((4000, 100), (534, 300), (534, 13)),  # width-limited
    ((160, 90), (534, 300), (533, 300)),  # scaled up as well as down
    ((10_000, 1), (100, 100), (100, 1)),  # never below 1x1
])
def test_fit_size_keeps_the_aspect_ratio_and_fits_the_box(size, box, expected):
    fitted = fit_size(*size, *box)
    assert fitted == expected
    assert fitted[0] <= box[0] and fitted[1] <= box[1] and (fitted[0] == box[0] or fitted[1] == box[1])


def test_resize_averages_when_shrinking_and_is_smooth_when_enlarging():
    checker = np.zeros((4, 4, 3), np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = 200
    assert (resize(checker, 2, 2) == 100).all()  # each pixel the mean of the four it covers
    ramp = np.repeat(np.linspace(0, 250, 8).astype(np.uint8)[None, :, None], 3, axis=2).repeat(2, axis=0)
    enlarged = resize(ramp, 32, 8)
    assert enlarged.shape == (8, 32, 3)
    assert (np.diff(enlarged[0, 4:-4, 0].astype(int)) >= 0).all()  # a ramp stays a ramp, in finer steps
    assert len(np.unique(enlarged[0, :, 0])) > len(np.unique(ramp[0, :, 0]))
    same = np.random.default_rng(0).integers(0, 256, (9, 16, 3), dtype=np.uint8)
    assert np.array_equal(resize(same, 16, 9), same) and np.array_equal(resize_area(same, 16, 9), same)


def test_resize_area_stretches_a_portrait_frame_to_a_cell_with_area_interpolation():
    portrait = np.random.default_rng(1).integers(0, 256, (300, 169, 3), dtype=np.uint8)
    cell = resize_area(portrait, 256, 144)
    assert cell.shape == (144, 256, 3)
    assert np.array_equal(cell, cv2.resize(portrait, (256, 144), interpolation=cv2.INTER_AREA))


def test_letterbox_keeps_the_aspect_ratio_and_centres_on_the_background():
    portrait = np.zeros((200, 100, 3), np.uint8)
    cell = letterbox(portrait, 100, 50, PAPER)
    assert cell.shape == (50, 100, 3)
    top, bottom, left, right = content_box(cell, PAPER)
    assert (top, bottom) == (0, 50) and (left, right) == (37, 62)  # 25 wide: 1:2 kept, margins 37 and 38
    assert (cell[:, :37] == PAPER).all() and (cell[:, 62:] == PAPER).all() and (cell[:, 37:62] == 0).all()

    wide = np.zeros((90, 160, 3), np.uint8)
    boxed = letterbox(wide, 64, 64, PAPER)
    top, bottom, left, right = content_box(boxed, PAPER)
    assert (left, right) == (0, 64) and (top, bottom) == (14, 50)  # 64x36: 16:9 kept
    assert letterbox(wide, 32, 18, PAPER).shape == (18, 32, 3)  # fills the box: no margins
    assert (letterbox(wide, 32, 18, PAPER) == 0).all()


def test_letterbox_photo_pads_with_black_using_pillows_lanczos():
    photo = Image.new("RGB", (200, 100), RED)
    frame = letterbox_photo(photo, 534, 300)
    assert frame.shape == (300, 534, 3) and frame.dtype == np.uint8
    top, bottom, left, right = content_box(frame, (0, 0, 0))
    assert (left, right) == (0, 534) and bottom - top == 267  # 2:1 kept
    assert (frame[:top] == 0).all() and (frame[bottom:] == 0).all()
    assert (frame[150, 10:-10] == RED).all()


@pytest.mark.parametrize("shape, red, blue, first, last", [
    # 16:9: the left and right ends, shrunk to 299; red only in the left, blue only in the right
    ((300, 533), np.s_[:, :233], np.s_[:, 300:], np.s_[:, :300], np.s_[:, 233:]),
    # portrait: the top and bottom, enlarged to 299
    ((300, 169), np.s_[:100], np.s_[200:], np.s_[:169], np.s_[131:]),
])
def test_the_squares_of_a_frame_are_its_two_ends(shape, red, blue, first, last):
    frame = np.zeros((*shape, 3), np.uint8)
    frame[red], frame[blue] = RED, BLUE
    one, other = left_and_right_squares(frame, 299)
    assert one.shape == other.shape == (299, 299, 3)
    assert np.array_equal(one, resize(frame[first], 299, 299)) and np.array_equal(other, resize(frame[last], 299, 299))
    assert one[..., 0].mean() > 150 and one[..., 2].max() == 0
    assert other[..., 2].mean() > 150 and other[..., 0].max() == 0


def test_a_jpeg_decodes_to_the_same_size_and_colours():
    rng = np.random.default_rng(2)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, (144, 256, 3), dtype=np.uint8), (15, 15), 5)
    pixels[:20, :40] = RED  # RGB in, RGB out: not swapped to BGR
    jpeg = encode_jpeg(pixels)
    assert jpeg[:2] == b"\xff\xd8"
    back = decoded(jpeg)
    assert back.shape == pixels.shape
    assert np.abs(back.astype(int) - pixels).mean() < 3
    assert (np.abs(back[4:16, 4:36].astype(int) - RED) < 12).all()
    assert len(encode_jpeg(pixels, quality=30)) < len(jpeg) < len(encode_jpeg(pixels, quality=98))
    assert JPEG_QUALITY == 85


def test_encode_jpeg_takes_a_slice_of_a_frame_store():
    frames = np.zeros((3, 36, 64, 3), np.uint8)
    frames[1, :, :32] = BLUE
    assert decoded(encode_jpeg(frames[1]))[18, 8, 2] > 240
    assert decoded(encode_jpeg(frames[1][:, ::2])).shape == (36, 32, 3)
