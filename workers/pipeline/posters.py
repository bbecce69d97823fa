"""Posters: a region of the map as one large printable mosaic (the article's Figure 9).

A poster is a window of the map (centre, width, rotation) cut into columns x rows cells;
the cells are square on the map, as the browser draws them, and 16:9 (the tile
resolution's aspect) on paper. Which frame fills which cell is an assignment: each cell
takes a frame near its centre and each frame fills at most one cell, at the least total
squared distance (scipy's sparse bipartite matching over each cell's nearest frames), so
one frame never covers a whole region. A cell with no frame within one cell's width of its
centre stays blank, or, with `empty="nearest"`, takes the nearest frame still unused.

Rendering keeps memory bounded whatever the poster's size: each cell's pixels, fitted and
centred on the paper colour (images.letterbox), go to a scratch file as they arrive (in
whatever order the source videos are best read), then the canvas is assembled one row of
cells at a time into a raw file on disk, which libvips streams into PNG, TIFF, or JPEG
wrapped in a PDF page of the requested size (img2pdf).

A scatter poster (`mode="scatter"`, scatter.py) shares this window, its size in pixels,
the validation of its parameters and the saving of the canvas, and draws cut-outs at
their exact map coordinates instead of a frame per cell.
"""
import math
import os
import re
import uuid
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np

from workers.pipeline.images import letterbox

FORMATS = ("png", "tiff", "pdf")
QUALITIES = ("preview", "print")
EMPTY_CELLS = ("blank", "nearest")
# "grid": a frame in every cell; "scatter": cut-outs at their exact places (scatter.py).
MODES = ("grid", "scatter")
BACKGROUND = (255, 255, 255)  # paper
MAX_CELLS_PER_SIDE = 2000
# The range of each number a poster may ask for (the API's schema states the same). The
# map spans -1 to 1: a window may reach past it, but not be ten times its size.
LIMITS = {
    "centre_x": (-10.0, 10.0), "centre_y": (-10.0, 10.0), "window_width": (0.0001, 20.0),
    "columns": (1, MAX_CELLS_PER_SIDE), "rows": (1, MAX_CELLS_PER_SIDE),
    "tile_width": (8, 20_000), "tile_height": (8, 20_000), "rotation": (-360.0, 360.0),
    "width_mm": (1.0, 100_000.0), "dpi": (10.0, 2400.0), "overlap": (0.0, 1.0),
}
CANDIDATES_PER_CELL = 32


class PosterError(ValueError):
    """Parameters that cannot make a poster; the message gives every reason."""


@dataclass
class PosterSpec:
    centre_x: float
    centre_y: float
    window_width: float  # in map units; the map spans -1 to 1
    columns: int
    rows: int
    tile_width: int = 534  # pixels per cell, unless width_mm and dpi set the size
    tile_height: int = 300
    rotation: float = 0.0  # degrees, counter-clockwise, of the window on the map
    format: str = "png"
    quality: str = "preview"  # "preview": the frame store; "print": the source files
    empty: str = "blank"  # cells with no frame near: "blank", or the "nearest" unused frame
    width_mm: float | None = None  # physical width; with dpi, it sets the pixel size
    dpi: float = 300.0
    mode: str = "grid"  # or "scatter": cut-outs at their map coordinates (scatter.py)
    overlap: float = 0.1  # scatter: how much of a cut-out's box the ones above it may hide
    background: str = "white"  # scatter: "white", "transparent" or "#rrggbb"; a grid is on white

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PosterError(f"unknown poster parameter(s): {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING)
        if missing:
            raise PosterError(f"missing poster parameter(s): {', '.join(missing)}")
        return cls(**data)

    def as_dict(self):
        return asdict(self)

    @property
    def window_height(self):
        return self.window_width * self.rows / self.columns

    @property
    def pixel_size(self):
        """(width, height) of the image in pixels."""
        aspect = (self.rows * self.tile_height) / (self.columns * self.tile_width)
        if self.width_mm:
            width = round(self.width_mm / 25.4 * self.dpi)
            return width, max(1, round(width * aspect))
        return self.columns * self.tile_width, self.rows * self.tile_height

    @property
    def size_mm(self):
        """(width, height) on paper, in millimetres, at `dpi`."""
        width, height = self.pixel_size
        if self.width_mm:
            return float(self.width_mm), self.width_mm * height / width
        return width / self.dpi * 25.4, height / self.dpi * 25.4

    def problems(self, max_pixels, max_cells=None):
        """Everything wrong with these parameters, as sentences (empty when they are fine)."""
        found = []
        numbers = {"centre_x": self.centre_x, "centre_y": self.centre_y, "window_width": self.window_width,
                   "rotation": self.rotation, "dpi": self.dpi, "overlap": self.overlap}
        for name, value in numbers.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                found.append(f"{name} must be a finite number, not {value!r}")
        for name in ("columns", "rows", "tile_width", "tile_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                found.append(f"{name} must be a whole number, not {value!r}")
        if found:
            return found
        if not 1 <= self.columns <= MAX_CELLS_PER_SIDE or not 1 <= self.rows <= MAX_CELLS_PER_SIDE:
            found.append(f"columns and rows must be 1 to {MAX_CELLS_PER_SIDE} (got {self.columns} x {self.rows})")
        elif max_cells and self.columns * self.rows > max_cells:
            found.append(f"{self.columns} x {self.rows} cells is more than the limit of {max_cells:,} "
                         "(POSTER_MAX_CELLS)")
        low, high = LIMITS["tile_width"]
        if not (low <= self.tile_width <= high and low <= self.tile_height <= high):
            found.append(f"tiles must be {low}x{low} to {high}x{high} pixels "
                         f"(got {self.tile_width}x{self.tile_height})")
        for name in ("centre_x", "centre_y", "window_width", "rotation", "dpi", "overlap"):
            low, high = LIMITS[name]
            if not low <= getattr(self, name) <= high:
                found.append(f"{name} must be {low:g} to {high:g} (got {getattr(self, name):g})")
        if self.format not in FORMATS:
            found.append(f"format must be one of {', '.join(FORMATS)} (got {self.format!r})")
        if self.quality not in QUALITIES:
            found.append(f"quality must be one of {', '.join(QUALITIES)} (got {self.quality!r})")
        if self.empty not in EMPTY_CELLS:
            found.append(f"empty must be one of {', '.join(EMPTY_CELLS)} (got {self.empty!r})")
        found += self._background_problems()
        low, high = LIMITS["width_mm"]
        if self.width_mm is not None and (not isinstance(self.width_mm, (int, float)) or isinstance(self.width_mm, bool)
                                          or not low <= self.width_mm <= high):
            found.append(f"width_mm must be {low:g} to {high:,g} millimetres, or none (got {self.width_mm!r})")
        if found:
            return found
        corners = self.corners()
        if (corners[:, 0].max() < -1 or corners[:, 0].min() > 1 or corners[:, 1].max() < -1
                or corners[:, 1].min() > 1):
            found.append(f"the window ({self.window_width:g} wide around {self.centre_x:g}, {self.centre_y:g}) "
                         "lies outside the map, which spans -1 to 1 on both axes")
        width, height = self.pixel_size
        if width < self.columns or height < self.rows:
            found.append(f"{width} x {height} pixels cannot hold {self.columns} x {self.rows} cells "
                         "(width_mm and dpi make it that small)")
        if width * height > max_pixels:
            found.append(f"{width} x {height} pixels is more than the limit of {max_pixels:,} "
                         "(POSTER_MAX_PIXELS)")
        return found

    def _background_problems(self):
        found = []
        if self.mode not in MODES:
            found.append(f"mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        if background_colour(self.background) is False:
            found.append(f"background must be white, transparent or a colour as #rrggbb (got {self.background!r})")
        elif self.mode == "grid" and self.background != "white":
            found.append(f"a grid poster is on white paper: background {self.background!r} is for scatter posters")
        elif self.format == "pdf" and self.background == "transparent":
            found.append("a PDF poster cannot be transparent: choose png or tiff, or a background colour")
        return found

    def validate(self, max_pixels, max_cells=None):
        found = self.problems(max_pixels, max_cells)
        if found:
            raise PosterError("; ".join(found))
        return self

    def _rotate(self, offsets):
        angle = math.radians(self.rotation)
        cos, sin = math.cos(angle), math.sin(angle)
        return np.stack([offsets[..., 0] * cos - offsets[..., 1] * sin,
                         offsets[..., 0] * sin + offsets[..., 1] * cos], axis=-1)

    def window_coordinates(self, xy):
        """(n, 2) positions of map points `xy` in the window's own frame: from its centre,
        along its width and up its height (the window's rotation undone)."""
        angle = math.radians(self.rotation)
        cos, sin = math.cos(angle), math.sin(angle)
        offsets = np.asarray(xy, dtype=np.float64).reshape(-1, 2) - [self.centre_x, self.centre_y]
        return np.stack([offsets[:, 0] * cos + offsets[:, 1] * sin,
                         -offsets[:, 0] * sin + offsets[:, 1] * cos], axis=-1)

    def corners(self):
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [self.window_width / 2, self.window_height / 2]
        return self._rotate(half) + [self.centre_x, self.centre_y]

    def cell_centres(self):
        """(rows, columns, 2) map coordinates of the cells' centres; row 0 at the top."""
        size = self.window_width / self.columns
        u = (np.arange(self.columns) + 0.5) * size - self.window_width / 2
        v = self.window_height / 2 - (np.arange(self.rows) + 0.5) * size
        offsets = np.stack(np.meshgrid(u, v), axis=-1)
        return self._rotate(offsets) + [self.centre_x, self.centre_y]


def background_colour(background):
    """The (r, g, b) of a poster's `background`, None for "transparent", False if it is
    neither "white", "transparent" nor "#rrggbb"."""
    if background == "white":
        return BACKGROUND
    if background == "transparent":
        return None
    if isinstance(background, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", background):
        return tuple(bytes.fromhex(background[1:]))
    return False


def _candidates(spec, xy):
    """The frames that may fill a cell, and how far from a cell's centre they may be."""
    cell_size = spec.window_width / spec.columns
    if spec.empty == "nearest":
        return np.arange(len(xy)), np.inf
    # Only frames within reach of the window can fill it.
    reach = max(spec.window_width, spec.window_height) * 0.75 + cell_size
    return np.flatnonzero(np.hypot(*(xy - [spec.centre_x, spec.centre_y]).T) <= reach), cell_size


def fills_a_cell(spec, xy):
    """Whether the poster would show any frame at all: a cheap check before rendering."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, dtype=np.float64)
    candidates, radius = _candidates(spec, xy)
    if len(candidates) == 0 or not np.isfinite(radius):
        return len(candidates) > 0
    distances, _ = cKDTree(spec.cell_centres().reshape(-1, 2)).query(xy[candidates], distance_upper_bound=radius)
    return bool(np.isfinite(distances).any())


def inside_window(spec, xy):
    """Which map points `xy` lie inside the poster's window (non-finite ones never do)."""
    along, up = spec.window_coordinates(xy).T
    with np.errstate(invalid="ignore"):
        return (np.abs(along) <= spec.window_width / 2) & (np.abs(up) <= spec.window_height / 2)


def frames_in_window(spec, xy):
    return int(inside_window(spec, xy).sum())


def cells_in_reach(spec, xy):
    """How many cells have a frame within reach: at most that many are filled, without
    solving the assignment (whose cost grows much faster with the cells)."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, dtype=np.float64)
    candidates, radius = _candidates(spec, xy)
    n_cells = spec.columns * spec.rows
    if len(candidates) == 0 or not np.isfinite(radius):
        return min(n_cells, len(candidates))
    distances, _ = cKDTree(xy[candidates]).query(spec.cell_centres().reshape(-1, 2), distance_upper_bound=radius)
    return min(int(np.isfinite(distances).sum()), len(candidates))


def assign_frames(spec, xy):
    """Map row of the frame each cell shows, (rows, columns) int64, -1 for a blank cell."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, dtype=np.float64)
    centres = spec.cell_centres().reshape(-1, 2)
    n_cells = len(centres)
    cell_size = spec.window_width / spec.columns
    candidates, radius = _candidates(spec, xy)
    if len(candidates) == 0:
        return np.full((spec.rows, spec.columns), -1, dtype=np.int64)
    k = min(CANDIDATES_PER_CELL, len(candidates))
    distances, nearest = cKDTree(xy[candidates]).query(centres, k=k, distance_upper_bound=radius)
    distances, nearest = distances.reshape(n_cells, k), nearest.reshape(n_cells, k)
    found = np.isfinite(distances)
    cell_of_edge = np.repeat(np.arange(n_cells), k)[found.reshape(-1)]
    # Tiny epsilon: a frame exactly on a centre must still be an edge of the sparse graph.
    costs = distances[found] ** 2 + 1e-12
    frames_of_edge = nearest[found]
    # Each cell also has its own "blank" option, dearer than any real frame in reach, so
    # there is always a full matching and a cell is blank only when that is best overall.
    worst = (radius if math.isfinite(radius) else distances[found].max(initial=cell_size)) ** 2
    blank_cost = 4 * worst + 1.0
    graph = csr_matrix((np.concatenate([costs, np.full(n_cells, blank_cost)]),
                        (np.concatenate([cell_of_edge, np.arange(n_cells)]),
                         np.concatenate([frames_of_edge, len(candidates) + np.arange(n_cells)]))),
                       shape=(n_cells, len(candidates) + n_cells))
    cells, columns = min_weight_full_bipartite_matching(graph)
    shown = np.full(n_cells, -1, dtype=np.int64)
    real = columns < len(candidates)
    shown[cells[real]] = candidates[columns[real]]
    return shown.reshape(spec.rows, spec.columns)


def cell_bounds(spec):
    """Pixel edges of the columns and rows: cells differ by at most a pixel."""
    width, height = spec.pixel_size
    return (np.round(np.linspace(0, width, spec.columns + 1)).astype(int),
            np.round(np.linspace(0, height, spec.rows + 1)).astype(int))


def render_poster(spec, assignment, fetch, out_path, work_dir, name="poster", progress=None):
    """Render the poster to `out_path`. `fetch(cells)` gets [(cell index, map row)] and
    yields (cell index, RGB pixels or None) in any order; a cell left None stays blank.
    Scratch files are `work_dir/name.*`: a second attempt at the same poster (its worker
    died) starts by replacing the first's. Returns (width, height, cells filled)."""
    report = progress or (lambda fraction: None)
    width, height = spec.pixel_size
    xs, ys = cell_bounds(spec)
    flat = assignment.reshape(-1)
    sizes = [(xs[i % spec.columns + 1] - xs[i % spec.columns], ys[i // spec.columns + 1] - ys[i // spec.columns])
             for i in range(len(flat))]
    offsets = np.concatenate([[0], np.cumsum([w * h * 3 for w, h in sizes])])
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cells_file, canvas_file = work_dir / f"{name}.cells.raw", work_dir / f"{name}.canvas.raw"
    filled = np.zeros(len(flat), dtype=bool)
    wanted = [(int(i), int(row)) for i, row in enumerate(flat) if row >= 0]
    try:
        with open(cells_file, "wb") as cells:
            for done, (cell, pixels) in enumerate(fetch(wanted), 1):
                if pixels is not None:
                    w, h = sizes[cell]
                    os.pwrite(cells.fileno(), np.ascontiguousarray(letterbox(pixels, w, h, BACKGROUND)).tobytes(),
                              int(offsets[cell]))
                    filled[cell] = True
                report(0.8 * done / max(len(wanted), 1))
        with open(cells_file, "rb") as cells, open(canvas_file, "wb") as canvas:
            for row in range(spec.rows):
                strip = np.empty((ys[row + 1] - ys[row], width, 3), np.uint8)
                strip[:] = BACKGROUND
                for column in range(spec.columns):
                    cell = row * spec.columns + column
                    if filled[cell]:
                        w, h = sizes[cell]
                        data = os.pread(cells.fileno(), w * h * 3, int(offsets[cell]))
                        strip[:, xs[column]:xs[column + 1]] = np.frombuffer(data, np.uint8).reshape(h, w, 3)
                canvas.write(strip.tobytes())
                report(0.8 + 0.1 * (row + 1) / spec.rows)
        cells_file.unlink()
        save_canvas(canvas_file, width, height, 3, spec, out_path, work_dir)
        report(1.0)
    finally:
        cells_file.unlink(missing_ok=True)
        canvas_file.unlink(missing_ok=True)
    return width, height, int(filled.sum())


def save_canvas(canvas_file, width, height, bands, spec, out_path, work_dir):
    """The raw canvas file (RGB, or RGBA with 4 bands) streamed into the poster's format at
    `out_path`. libvips maps the raw file and streams it into the encoder: the canvas is
    never in the heap (its pages are the file's, which the kernel may drop at any time)."""
    import pyvips

    image = pyvips.Image.rawload(str(canvas_file), width, height, bands).copy(
        interpretation="srgb", xres=spec.dpi / 25.4, yres=spec.dpi / 25.4)
    _save(image, spec, Path(out_path), Path(work_dir))


def _save(image, spec, out_path, work_dir):
    """Stream the canvas into the file format, under a temporary name, then rename. PNG
    and TIFF keep a fourth band as alpha; a PDF page is opaque (`problems` refuses a
    transparent one)."""
    partial = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if spec.format == "png":
            image.pngsave(str(partial), compression=6)
        elif spec.format == "tiff":
            image.tiffsave(str(partial), tile=True, compression="deflate", predictor="horizontal",
                           resunit="inch", bigtiff=image.width * image.height * image.bands > 3_500_000_000)
        else:
            _save_pdf(image, spec, partial, work_dir)
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)


def _save_pdf(image, spec, out_path, work_dir):
    """One page of exactly the poster's physical size, the image as a JPEG filling it."""
    import img2pdf

    jpeg = work_dir / f"page-{uuid.uuid4().hex}.jpg"
    try:
        image.jpegsave(str(jpeg), Q=92, optimize_coding=True)
        width_mm, height_mm = spec.size_mm
        layout = img2pdf.get_layout_fun((img2pdf.mm_to_pt(width_mm), img2pdf.mm_to_pt(height_mm)))
        with open(out_path, "wb") as out:
            img2pdf.convert(str(jpeg), layout_fun=layout, outputstream=out)
    finally:
        jpeg.unlink(missing_ok=True)
