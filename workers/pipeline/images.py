"""Pixel operations that the stages share, on RGB images: uint8 arrays of shape
(height, width, 3), as the frame store holds them.

One home, so that the same operation makes the same pixels wherever it is used:

  fit_size                the size a picture scales to inside a box (sampling, letterbox)
  resize, resize_area     scaling to an exact size (features' crops, posters' cells, tiles)
  letterbox               fitted and centred on a background colour (posters' cells)
  letterbox_photo         how a photo becomes its frame: Pillow's Lanczos (sampling)
  left_and_right_squares  the two squares Xception sees of each frame (features)
  encode_jpeg             JPEG bytes (map tiles, frames served to the browser)

OpenCV does the scaling and encoding: it releases the GIL, so the features' background
thread crops while TensorFlow runs the previous batch.

Not here: decoding the sources (sampling.py: PyAV scales video frames while decoding,
Pillow reads photos, each with its own errors), and the posters' file formats
(posters.py: libvips streams a canvas larger than memory into PNG, TIFF or a PDF page).

The colour tools build on these operations in modules next to this one: cutouts.py
(a frame's plain background made transparent), palette.py (k-means palette quantization,
flicker), gifs.py (GIF writing).
"""
import numpy as np

JPEG_QUALITY = 85  # map tiles and frames: small files, no visible blocks at their size


def fit_size(width, height, box_width, box_height):
    """The largest size (width, height) with this aspect ratio that fits the box: it
    scales up as well as down, and is at least 1x1."""
    scale = min(box_width / width, box_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(pixels, width, height):
    """`pixels` scaled to exactly `width` x `height` (keeping the aspect ratio is the
    caller's business): OpenCV's INTER_AREA when no side grows (each pixel the mean of
    those it covers: no aliasing), INTER_CUBIC when one does (sharper than averaging)."""
    import cv2

    h, w = np.shape(pixels)[:2]
    shrinks = width <= w and height <= h
    return _resize(pixels, width, height, cv2.INTER_AREA if shrinks else cv2.INTER_CUBIC)


def resize_area(pixels, width, height):
    """`pixels` scaled to exactly `width` x `height` with INTER_AREA whatever the sizes:
    the map tiles' thumbnails, which almost always shrink their frame (and where a portrait
    frame is stretched to a 16:9 cell, grow one side while the other shrinks)."""
    import cv2

    return _resize(pixels, width, height, cv2.INTER_AREA)


def _resize(pixels, width, height, interpolation):
    import cv2

    return cv2.resize(np.ascontiguousarray(pixels), (int(width), int(height)), interpolation=interpolation)


def letterbox(pixels, width, height, background):
    """`pixels` scaled by `resize` to the largest size that fits `width` x `height` with
    its aspect ratio kept, centred on `background` (RGB, or RGBA for RGBA pixels: the
    scatter posters' cut-outs); where the sizes do not split evenly the extra pixel of
    margin goes right and below. A picture that fills the box comes back without margins."""
    h, w = np.shape(pixels)[:2]
    size = fit_size(w, h, width, height)
    scaled = resize(pixels, *size)
    if size == (width, height):
        return scaled
    boxed = np.empty((height, width, np.shape(pixels)[2]), np.uint8)
    boxed[:] = background
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    boxed[top:top + size[1], left:left + size[0]] = scaled
    return boxed


def letterbox_photo(image, width, height):
    """A Pillow image letterboxed onto black with Pillow's Lanczos filter (ImageOps.pad),
    as an array: how a photo becomes its one frame in the frame store. Apart from
    `letterbox` because Pillow scales and rounds the margins its own way, and a photo
    sampled again must give the pixels its frame store already holds."""
    from PIL import Image, ImageOps

    return np.asarray(ImageOps.pad(image, (width, height), method=Image.Resampling.LANCZOS, color=(0, 0, 0)))


def left_and_right_squares(frame, side):
    """The two squares of side min(height, width) at either end of a frame (left and right
    of a landscape frame, top and bottom of a portrait one), each resized to `side` x
    `side`: what the feature network sees of a frame that is not square."""
    height, width = frame.shape[:2]
    square = min(height, width)
    first = frame[:square, :square]
    last = frame[height - square:, width - square:]
    return resize(first, side, side), resize(last, side, side)


def encode_jpeg(pixels, quality=JPEG_QUALITY):
    """JPEG bytes of RGB `pixels`: baseline, 4:2:0 chroma, `quality` 0 to 100."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(np.asarray(pixels)[..., ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def encode_png(pixels):
    """PNG bytes of RGB or RGBA `pixels` (uint8)."""
    import cv2

    pixels = np.asarray(pixels)
    order = [2, 1, 0, 3][:pixels.shape[-1]]  # OpenCV's BGR(A)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels[..., order]))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()
