"""From the model's output to 3D: metric depth, camera intrinsics, unprojection to points.

Conventions (the evaluation's reprojection, :func:`flashdepth.metrics.reprojection_error`, uses
:func:`unproject` too):

* camera coordinates are OpenCV's: x right, y down, z forward, in metres;
* pixel ``(u, v)`` is column ``u``, row ``v`` of the array, and its centre is at the integer
  coordinates ``(u, v)``; so a pinhole camera centred on the image has
  ``cx = (width - 1) / 2``, ``cy = (height - 1) / 2``. (Tools that put pixel centres at
  ``u + 0.5``, such as Rerun, need ``cx + 0.5``, ``cy + 0.5``.)

The published relative models predict inverse depth scaled by 100 (ground-truth inverse depth in
1/m times 100), so depth in metres is about ``100 / prediction``. It is relative, not calibrated:
good for looking at the scene, not for measuring it. A metric stream (a model whose unit, a row of
:data:`flashdepth.config.UNITS`, is metric, or a relative stream aligned to metres by
:mod:`flashdepth.metric`) is used as it is: :attr:`Unprojection.unit` says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .config import UNITS
from .errors import ConfigError, UnknownNameError

#: horizontal field of view assumed when no intrinsics are given: a typical webcam or phone
#: main camera (most have 60 to 80 degrees); wider lenses look stretched in depth with it
DEFAULT_FOV = 60.0
#: the published models' inverse depth per 1/m
DEPTH_SCALE = 100.0
#: points farther than this (metres) are left out; the evaluation's default cap too
DEFAULT_MAX_DEPTH = 70.0


def check_fov(fov_deg: float) -> None:
    """Raise :class:`ConfigError` unless ``fov_deg`` is a horizontal field of view (0 to 180 degrees, open)."""
    if not 0 < fov_deg < 180:
        raise ConfigError(f"fov={fov_deg!r} degrees is not a field of view; give a value between 0 and 180")


def check_max_depth(max_depth: float, name: str = "max_depth") -> None:
    """Raise :class:`ConfigError` unless ``max_depth`` is a positive distance in metres (a cap of 0 or
    less would leave no pixel, or, in the evaluation, clip every depth to one value)."""
    if not max_depth > 0:  # also refuses NaN
        raise ConfigError(f"{name}={max_depth!r} must be a positive distance in metres "
                          f"(the default is {DEFAULT_MAX_DEPTH:g})")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (pixel centres at integer coordinates, see the module)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise ConfigError(f"intrinsics {values} are not valid: fx and fy must be positive, all four finite")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float = DEFAULT_FOV) -> "Intrinsics":
        """Square pixels, principal point at the image centre, horizontal field of view ``fov_deg``."""
        check_fov(fov_deg)
        f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @classmethod
    def parse(cls, text: str) -> "Intrinsics":
        """``"fx,fy,cx,cy"`` in pixels."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ConfigError(f"intrinsics {text!r} are not four numbers; write them as 'fx,fy,cx,cy' in pixels")
        return cls(*values)

    def matrix(self) -> np.ndarray:
        """(3, 3) K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Unprojection:
    """How depth maps become points: the camera, the stream's unit and depth scale, the far limit.

    ``intrinsics=None`` derives them at each frame's size from the horizontal ``fov`` (degrees).
    ``unit`` (a name of :data:`flashdepth.config.UNITS`) is what the depth maps hold: metric depth
    is used as it is (exact metres); relative inverse depth becomes ``depth_scale / value``
    (approximate metres, the published models' training scale).
    """

    intrinsics: Optional[Intrinsics] = None
    fov: float = DEFAULT_FOV
    depth_scale: float = DEPTH_SCALE
    max_depth: float = DEFAULT_MAX_DEPTH
    unit: str = "relative-inverse-depth"

    def __post_init__(self):
        check_fov(self.fov)
        check_max_depth(self.max_depth)
        if not self.depth_scale > 0:
            raise ConfigError(f"depth_scale={self.depth_scale!r} must be positive (100 for the published models)")
        if self.unit not in UNITS:
            raise UnknownNameError("unit", self.unit, list(UNITS))

    @property
    def exact(self) -> bool:
        """Whether the points are in exact metres (a metric unit) rather than approximate ones."""
        return UNITS[self.unit].metric

    def intrinsics_for(self, width: int, height: int) -> Intrinsics:
        return self.intrinsics if self.intrinsics is not None else Intrinsics.from_fov(width, height, self.fov)

    def metric(self, values: np.ndarray) -> np.ndarray:
        """One map in :attr:`unit` -> depth in metres, NaN where there is no point."""
        unit = UNITS[self.unit]
        if unit.inverse:  # 1/m for a metric unit; x depth_scale for the relative one
            return metric_depth(values, 1.0 if unit.metric else self.depth_scale, self.max_depth)
        depth = np.asarray(values, dtype=np.float32)
        valid = np.isfinite(depth) & (depth > 0) & (depth <= self.max_depth)
        return np.where(valid, depth, np.float32(np.nan)).astype(np.float32)  # (H, W) metres as given

    def points(self, inverse: np.ndarray, image: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(N, 3) float32 points of the valid pixels of one depth map in :attr:`unit`, and their
        (N, 3) uint8 colours from ``image`` (None without one)."""
        depth = self.metric(inverse)  # (H, W)
        points = unproject(depth, self.intrinsics_for(depth.shape[1], depth.shape[0]))
        return points, None if image is None else point_colors(image, valid_pixels(depth))


def metric_depth(inverse: np.ndarray, scale: float = DEPTH_SCALE, max_depth: float = DEFAULT_MAX_DEPTH) -> np.ndarray:
    """Model output (inverse depth x ``scale``) -> depth in metres, NaN where invalid.

    Invalid: predictions at or below ``scale / max_depth`` (the sky, whose prediction is near 0,
    anything farther than ``max_depth`` metres, and non-positive values) and non-finite ones.
    """
    inverse = np.asarray(inverse, dtype=np.float32)
    valid = np.isfinite(inverse) & (inverse > scale / max_depth)
    depth = np.full(inverse.shape, np.nan, dtype=np.float32)
    np.divide(np.float32(scale), inverse, out=depth, where=valid)
    return depth


def unproject(depth: np.ndarray, intrinsics: Intrinsics, dtype=np.float32) -> np.ndarray:
    """(H, W) depth in metres (NaN, non-positive or infinite = no point) -> (N, 3) points in
    camera coordinates, in row-major pixel order, computed in ``dtype`` (float32 for the 3D
    outputs; the evaluation's reprojection asks for float64)."""
    depth = np.asarray(depth, dtype=dtype)
    valid = valid_pixels(depth)
    v, u = np.nonzero(valid)  # (N,) rows, columns: the row-major order of depth[valid]
    z = depth[valid]  # (N,)
    x = (u.astype(dtype) - dtype(intrinsics.cx)) * z / dtype(intrinsics.fx)  # (N,)
    y = (v.astype(dtype) - dtype(intrinsics.cy)) * z / dtype(intrinsics.fy)  # (N,)
    return np.stack([x, y, z], axis=1)  # (N, 3)


def valid_pixels(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of a metric depth map that become points."""
    return np.isfinite(depth) & (depth > 0)


def point_colors(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours of the pixels where ``valid`` (H, W; :func:`valid_pixels`) is true,
    in the order of :func:`unproject`; grey, 16-bit and RGBA images are converted to 8-bit RGB."""
    from .utils import as_rgb8

    return as_rgb8(image)[valid]
