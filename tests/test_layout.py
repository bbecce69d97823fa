"""The layout stage (5): the radial stretch that spreads the 2D codes over the map."""
import json

import numpy as np
import pytest

from workers.pipeline.layout import RadialStretch, occupied_cells


def blob(n=20_000, seed=0, std=0.3, center=(0.2, -0.1)):
    """What the autoencoder's codes look like: a Gaussian blob inside (-1, 1)^2."""
    return np.clip(np.random.default_rng(seed).normal(center, std, size=(n, 2)), -0.999, 0.999)


def test_output_is_in_the_unit_disk_inside_the_square():
    codes = np.random.default_rng(1).standard_cauchy(size=(5000, 2))  # heavy tails, far outside
    xy = RadialStretch().fit_transform(codes)
    assert xy.shape == (5000, 2) and xy.dtype == np.float32
    assert np.all(np.abs(xy) <= 1.0)
    assert np.all(np.hypot(*xy.T) <= 1.0 + 1e-6)


@pytest.mark.parametrize("std, gain", [(0.15, 4.0), (0.3, 1.4)])
def test_stretch_spreads_a_blob_over_the_map(std, gain):
    codes = blob(5000, std=std)
    xy = RadialStretch().fit_transform(codes)
    before, after = occupied_cells(codes), occupied_cells(xy)
    assert after > gain * before
    # The unit disk covers pi/4 of the square (804 of 1024 cells, 852 touching it): nearly
    # all of them get a point, five per cell on average.
    assert after > 0.78 * 32 * 32


def test_density_is_uniform_over_the_area_of_the_disk():
    xy = RadialStretch().fit_transform(blob())
    radius = np.hypot(*xy.T)
    for r in (0.25, 0.5, 0.75, 0.9):
        assert np.mean(radius <= r) == pytest.approx(r * r, abs=0.01)
    # The angle is untouched: each quadrant keeps about a quarter of a round blob.
    quadrants = np.bincount((xy[:, 0] > 0) * 2 + (xy[:, 1] > 0), minlength=4) / len(xy)
    assert np.allclose(quadrants, 0.25, atol=0.02)
    # The centre is the median, not the origin: the blob's centre lands in the middle.
    assert np.allclose(np.median(xy, axis=0), 0.0, atol=0.02)


def test_stretch_keeps_the_order_of_distances_from_the_centre_and_the_angles():
    codes = blob(2000)
    layout = RadialStretch().fit(codes)
    xy = layout.transform(codes)
    offsets = codes - layout.center_
    assert np.all(np.diff(np.hypot(*xy.T)[np.argsort(np.hypot(*offsets.T))]) >= -1e-6)
    inner = np.hypot(*xy.T) > 0  # only a point right on the centre would stay on it
    assert inner.sum() == len(xy)
    directions = offsets[inner] / np.hypot(*offsets[inner].T)[:, None]
    assert np.allclose(xy[inner] / np.hypot(*xy[inner].T)[:, None], directions, atol=1e-5)


def test_rotation():
    codes = blob(3000)
    plain = RadialStretch().fit_transform(codes)
    turned = RadialStretch(rotation_degrees=90).fit_transform(codes)
    assert np.allclose(turned, np.stack([-plain[:, 1], plain[:, 0]], axis=1), atol=1e-6)
    thirty = RadialStretch(rotation_degrees=30).fit_transform(codes)
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert np.allclose(thirty, plain @ rotation.T, atol=1e-6)


def test_to_dict_from_dict_round_trip_through_json():
    codes = blob(3000)
    layout = RadialStretch(quantiles=101, rotation_degrees=12.5).fit(codes)
    state = json.loads(json.dumps(layout.to_dict()))
    restored = RadialStretch.from_dict(state)
    assert restored.quantiles == 101 and restored.rotation_degrees == 12.5
    assert len(state["radius_quantiles"]) == 101
    assert np.array_equal(restored.transform(codes), layout.transform(codes))


def test_new_points_are_placed_like_fitted_ones_without_refitting():
    codes = blob(5000)
    layout = RadialStretch().fit(codes)
    whole = layout.transform(codes)
    assert np.array_equal(layout.transform(codes[1234:1300]), whole[1234:1300])
    assert np.array_equal(layout.transform(codes[::-1]), whole[::-1])
    # Frames added later, from the same distribution, are spread evenly too.
    later = layout.transform(blob(5000, seed=7))
    assert np.mean(np.hypot(*later.T) <= 0.5) == pytest.approx(0.25, abs=0.03)
    # ...and the fitted state has not moved.
    assert np.array_equal(layout.transform(codes), whole)


def test_few_quantiles_interpolate_the_distribution():
    xy = RadialStretch(quantiles=11).fit_transform(blob())
    assert np.mean(np.hypot(*xy.T) <= 0.5) == pytest.approx(0.25, abs=0.02)


def test_occupied_cells():
    assert occupied_cells(np.zeros((10, 2))) == 1
    corners = np.array([[-1, -1], [1, 1], [-1, 1], [1, -1], [0.999, 0.999]])
    assert occupied_cells(corners, grid=4) == 4
    assert occupied_cells(np.array([[1.5, 0.0], [0.0, -2.0]])) == 0  # outside the square
    centers = (np.stack(np.meshgrid(np.arange(8), np.arange(8)), axis=-1).reshape(-1, 2) + 0.5) / 4 - 1
    assert occupied_cells(centers, grid=8) == 64
    assert occupied_cells(centers, grid=4) == 16


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        RadialStretch().fit(np.zeros((10, 3)))
    with pytest.raises(ValueError):
        RadialStretch().fit(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        RadialStretch().fit(np.array([[0.0, np.nan], [1.0, 1.0]]))


def test_codes_tied_on_the_centre_move_no_further_than_their_rounding():
    """Identical frames (a still video) have one code; when it is the centre, a re-placement
    that rounds it differently (1e-7 away) must keep it where it was, not jump it outward."""
    codes = np.concatenate([np.full((7, 2), 0.1), blob(n=6, seed=2)])  # 7 of 13: the median is theirs
    stretch = RadialStretch().fit(codes)
    assert np.array_equal(stretch.center_, [0.1, 0.1])
    placed = stretch.transform(codes)
    again = stretch.transform(codes + np.array([1e-7, -1e-7]))
    assert np.abs(again - placed).max() < 1e-3  # measured 2e-4; before: 0.5, from the centre half-way out
    assert np.all(placed[:7] == 0)  # the tie stays on the centre
    # A tie away from the centre is continuous too.
    ring = np.concatenate([np.full((50, 2), 0.3), blob(n=200, seed=3, center=(0, 0))])
    stretch = RadialStretch().fit(ring)
    moved = np.abs(stretch.transform(ring[:1] * (1 + 1e-7)) - stretch.transform(ring[:1])).max()
    assert moved < 1e-3  # measured 1.4e-4; before: 0.09, across the tie's fifth of the levels
