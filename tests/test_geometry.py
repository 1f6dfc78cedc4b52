"""Metric depth, intrinsics and unprojection (flashdepth.geometry)."""

import math

import numpy as np
import pytest

from flashdepth.errors import ConfigError
from flashdepth.geometry import Intrinsics, Unprojection, metric_depth, point_colors, unproject, valid_pixels


def test_fov_intrinsics_centre_the_image_and_span_the_field_of_view():
    k = Intrinsics.from_fov(640, 480, 90.0)
    assert (k.cx, k.cy) == (319.5, 239.5)  # pixel centres at integers: the image centre
    assert k.fx == k.fy == pytest.approx(320.0)  # tan(45 deg) = 1: half the width at unit depth
    # The rays through the outer edges of the border pixels (u = -0.5 and u = 639.5) are 90 degrees apart.
    left, right = (-0.5 - k.cx) / k.fx, (639.5 - k.cx) / k.fx
    assert math.degrees(math.atan(right) - math.atan(left)) == pytest.approx(90.0)
    assert Intrinsics.parse("500, 510,320.5,240") == Intrinsics(500.0, 510.0, 320.5, 240.0)
    for bad in ("500,510,320", "a,b,c,d", "0,500,320,240", "500,500,nan,240"):
        with pytest.raises(ConfigError):
            Intrinsics.parse(bad)
    for fov in (0.0, 180.0, float("nan")):
        with pytest.raises(ConfigError, match="fov"):
            Unprojection(fov=fov)
        with pytest.raises(ConfigError, match="fov"):
            Intrinsics.from_fov(640, 480, fov)


def test_metric_depth_inverts_the_published_scale_and_drops_sky_and_far_pixels():
    inverse = np.array([[100.0, 50.0, 200.0], [0.0, 1e-4, 1.0], [-3.0, np.inf, np.nan]], dtype=np.float32)
    depth = metric_depth(inverse, scale=100.0, max_depth=70.0)
    np.testing.assert_allclose(depth[0], [1.0, 2.0, 0.5])
    assert np.isnan(depth[1:]).all()  # sky (0 and near 0), 100 m > 70 m, negative, non-finite
    assert metric_depth(np.float32([[1.0]]), max_depth=101.0)[0, 0] == pytest.approx(100.0)


def test_a_plane_at_known_depth_unprojects_to_a_plane_at_that_distance():
    h, w, z = 48, 64, 2.5
    k = Intrinsics.from_fov(w, h, 60.0)
    inverse = np.full((h, w), 100.0 / z, dtype=np.float32)  # a wall facing the camera, 2.5 m away
    inverse[:8] = 0.0  # and sky above it
    points = unproject(metric_depth(inverse), k)
    assert points.shape == ((h - 8) * w, 3) and points.dtype == np.float32
    np.testing.assert_allclose(points[:, 2], z, rtol=1e-6)
    # The wall spans the field of view: x from the left to the right edge ray, pixel by pixel.
    half_width = z * math.tan(math.radians(30.0))
    assert points[:, 0].min() == pytest.approx(-half_width * (w - 1) / w, rel=1e-5)
    assert points[:, 0].max() == pytest.approx(half_width * (w - 1) / w, rel=1e-5)
    assert points[0, 1] < 0 < points[-1, 1]  # rows go down: y down (OpenCV), first valid row above centre
    # A tilted plane z = 2 + 0.5 x stays a plane: the points fit it exactly.
    u = np.arange(w)[None, :] - k.cx
    tilted = 2.0 / (1.0 - 0.5 * u / k.fx) * np.ones((h, 1))
    pts = unproject(tilted.astype(np.float32), k)
    np.testing.assert_allclose(pts[:, 2], 2.0 + 0.5 * pts[:, 0], atol=1e-5)


def test_points_project_back_onto_the_pixels_they_came_from():
    """Projecting the points back through the pinhole lands on their pixels, in float32 and float64."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, size=(30, 40)).astype(np.float32)
    depth[3, 4] = np.nan
    k = Intrinsics(50.0, 55.0, 19.0, 15.5)
    pts = unproject(depth, k)
    v, u = np.nonzero(valid_pixels(depth))
    np.testing.assert_allclose(pts[:, 0] / pts[:, 2] * k.fx + k.cx, u, atol=1e-4)
    np.testing.assert_allclose(pts[:, 1] / pts[:, 2] * k.fy + k.cy, v, atol=1e-4)
    exact = unproject(depth, k, dtype=np.float64)
    assert exact.dtype == np.float64 and pts.dtype == np.float32
    np.testing.assert_allclose(exact[:, 0] / exact[:, 2] * k.fx + k.cx, u, atol=1e-9)
    np.testing.assert_allclose(exact, pts, rtol=1e-6)


def test_colours_follow_the_points_for_every_image_kind():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    inverse = np.full((6, 8), 50.0, dtype=np.float32)
    inverse[0, :3] = 0.0
    points, colors = Unprojection().points(inverse, rgb)
    assert colors.shape == (len(points), 3) == (45, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(colors[0], rgb[0, 3])  # the first valid pixel, row-major
    valid = valid_pixels(metric_depth(inverse))
    deep = rgb.astype(np.uint16) * 257
    np.testing.assert_array_equal(point_colors(deep, valid), colors)  # 16-bit
    np.testing.assert_array_equal(point_colors(np.dstack([rgb, rgb[..., :1]]), valid), colors)  # RGBA
    assert (point_colors(rgb[..., 0], valid) == rgb[..., 0][valid][:, None]).all()  # grey
