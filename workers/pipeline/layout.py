"""Stage 5, layout: spread the autoencoder's 2D codes evenly over the map.

The codes come out as a blob: dense in the middle (the regularizer pulls them toward a
standard deviation of 0.3 inside tanh's (-1, 1)), sparse at the edges. A map tiled by a
grid of cells then shows most frames crammed into a few central cells and leaves the
rest empty. RadialStretch fixes the density along the radius only: each point keeps its
angle around the centre, and its distance r from the centre goes through the empirical
distribution F of those distances to r' = sqrt(F(r)). Since the fraction of a unit disk
within radius r' is r'^2, the points then cover the unit disk with an even area density
(except where codes coincide: identical codes stay one point, and the ring they would
fill stays empty).
The order of distances from the centre is kept, and so are neighbourhoods, up to the
local change of scale.

It is a function, learned once: F is stored as `quantiles` percentiles of the radius and
interpolated between them, so frames added later are placed consistently without refitting
(radii beyond the largest fitted one land on the rim, or on the ring of the largest ones
when several codes tie there). The result is rotated by
`rotation_degrees` and clipped to [-1, 1]^2.
"""
import numpy as np


class RadialStretch:
    """scikit-learn contract: parameters here, `fit`, learned `center_` and `radius_quantiles_`."""

    def __init__(self, quantiles=1001, rotation_degrees=0.0):
        self.quantiles = quantiles
        self.rotation_degrees = rotation_degrees

    def fit(self, codes):
        """Learn the centre (coordinate-wise median) and the distribution of distances to it."""
        codes = _as_points(codes)
        if len(codes) == 0:
            raise ValueError("cannot fit a layout on zero points")
        if not np.all(np.isfinite(codes)):
            raise ValueError("codes contain NaN or infinite values")
        if self.quantiles < 2:
            raise ValueError("quantiles must be at least 2")
        self.center_ = np.median(codes, axis=0)
        radii = np.hypot(*(codes - self.center_).T)
        self.radius_quantiles_ = np.quantile(radii, np.linspace(0.0, 1.0, self.quantiles))
        return self

    def cdf(self, radii):
        """The fitted distribution function F of the distance to the centre (0 to 1).

        F is continuous, and where codes tie exactly (a still video's frames), or sit on the
        centre, a code a rounding error away lands next to them, not a jump away; radii
        apart by less than the quantiles resolve can still spread far (F is steep there):
          - F is linear in r^2 between the quantiles, as it is for an even density over an
            area, and runs from the centre straight to the second quantile: near the
            centre sqrt(F) is then linear in r, where from the smallest fitted radius
            (level 0) it would grow like a square root and magnify any rounding;
          - quantiles that tie (several frames with one code, such as the frames of a still
            video) are one step, at the first of their levels; beyond the largest fitted
            radius F stays at its level."""
        levels = np.linspace(0.0, 1.0, len(self.radius_quantiles_))
        radius, first = np.unique(self.radius_quantiles_[1:], return_index=True)
        off_centre = radius > 0
        squared = np.concatenate([[0.0], np.square(radius[off_centre])])
        return np.interp(np.square(radii), squared, np.concatenate([[0.0], levels[1:][first[off_centre]]]))

    def transform(self, codes):
        """(n, 2) codes -> (n, 2) float32 map coordinates in the unit disk, within [-1, 1]^2."""
        offsets = _as_points(codes) - self.center_
        radii = np.hypot(offsets[:, 0], offsets[:, 1])
        angles = np.arctan2(offsets[:, 1], offsets[:, 0]) + np.deg2rad(self.rotation_degrees)
        stretched = np.sqrt(self.cdf(radii))
        xy = np.stack([stretched * np.cos(angles), stretched * np.sin(angles)], axis=1)
        return np.clip(xy, -1.0, 1.0).astype(np.float32)

    def fit_transform(self, codes):
        return self.fit(codes).transform(codes)

    def to_dict(self):
        """Parameters and learned state as JSON values."""
        return {
            "quantiles": int(self.quantiles),
            "rotation_degrees": float(self.rotation_degrees),
            "center": [float(v) for v in self.center_],
            "radius_quantiles": [float(v) for v in self.radius_quantiles_],
        }

    @classmethod
    def from_dict(cls, state):
        layout = cls(quantiles=state["quantiles"], rotation_degrees=state["rotation_degrees"])
        layout.center_ = np.array(state["center"], dtype=np.float64)
        layout.radius_quantiles_ = np.array(state["radius_quantiles"], dtype=np.float64)
        return layout


def occupied_cells(xy, grid=32):
    """How many cells of a grid x grid partition of [-1, 1]^2 hold at least one point.
    Points outside the square are in no cell; points on its far edges are in the last cells."""
    xy = _as_points(xy)
    xy = xy[np.all(np.abs(xy) <= 1.0, axis=1)]
    cells = np.minimum(((xy + 1.0) / 2.0 * grid).astype(np.int64), grid - 1)
    return len(np.unique(cells[:, 0] * grid + cells[:, 1]))


def _as_points(values):
    points = np.asarray(values, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"expected (n, 2) points, got shape {points.shape}")
    return points
