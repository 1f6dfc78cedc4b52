"""The fit of one measurement, and its smoothing over time: scale and shift in inverse depth.

A relative stream ``x`` (inverse depth known up to a scale and a shift) and metric measurements
``y`` (inverse depth in 1/m, dense from a metric model or sparse from anchors) are related by
``y ~ s * x + t``. One measurement gives the normal-equation sums of a robust weighted least-squares
fit (:func:`measurement_sums`); the stream's fit is the least-squares solution of all the sums seen,
each older one discounted by a forgetting factor (:class:`FitFilter`): a running weighted least
squares, which is what a Kalman filter on (s, t) with a random-walk model reduces to.

Robustness, per measurement:

* each pixel is weighted by ``1 / y`` (its depth): plain least squares in inverse depth would let
  the near pixels decide alone, fully relative residuals (weights ``1 / y^2``) the far range, where
  metric models are least sure (on the synthetic clips of tests/test_metric_stream.py, weights
  ``1 / y^2`` made the aligned scale flicker more than the relative stream's own);
* outliers are judged by their relative residual ``(s x + t) / y - 1`` (an error in depth as a ratio);
* pixels with no measurement are out: ``y`` not finite or not positive, a metric model's pixels at
  or beyond ``far_fraction`` of its depth cap (its sky and far range, where a sigmoid head
  saturates), and relative pixels below ``sky_fraction`` of the frame's 95th percentile (the sky
  and the far range of the relative model, near inverse depth 0);
* outliers are rejected by iterated trimming: fit, drop the pixels whose relative residual is more
  than ``rejection`` robust standard deviations (1.4826 x the median absolute deviation) from the
  median, fit again (``iterations`` times);
* a measurement with fewer than ``min_points`` inliers is ignored (the stream keeps its fit);
* the scale is kept non-negative (:func:`solve_nonnegative`): a relative frame ordered against the
  measurements becomes a flat depth at their distance, never an inverted scene.

Pure NumPy, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import OptionValueError


@dataclass(frozen=True)
class FitOptions:
    """How one measurement is fitted (see the module) and how fits are smoothed over time."""

    rejection: float = 3.0  # robust standard deviations of relative residual beyond which a pixel is an outlier
    iterations: int = 3  # trimming rounds
    sky_fraction: float = 0.05  # relative values below this fraction of the frame's 95th percentile: sky / far
    far_fraction: float = 0.95  # metric-model depths at or beyond this fraction of its cap: saturated, out
    min_points: int = 20  # a measurement with fewer inliers is ignored
    max_points: int = 16384  # dense measurements are subsampled on a regular grid to about this many pixels
    half_life: float = 1.0  # measurements after which an old measurement weighs half as much as a new one

    def __post_init__(self):
        for name in ("rejection", "half_life"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise OptionValueError(name, value, "give a positive number")
        for name in ("sky_fraction", "far_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise OptionValueError(name, value, "give a fraction between 0 and 1")
        for name in ("iterations", "min_points", "max_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionValueError(name, value, "give a whole number, 1 or more")

    @property
    def decay(self) -> float:
        """The weight an accumulated fit keeps when a new measurement comes."""
        return 0.5 ** (1.0 / self.half_life)


def solve(sums: np.ndarray) -> Optional[tuple[float, float]]:
    """(s, t) of the weighted normal-equation sums [Sw x^2, Sw x, Sw, Sw x y, Sw y]; None when
    degenerate (no weight, or a constant x)."""
    sxx, sx, sw, sxy, sy = (float(v) for v in sums)
    det = sxx * sw - sx * sx
    if sw <= 0 or det <= 1e-12 * max(sxx * sw, 1e-300):
        return None
    return (sxy * sw - sx * sy) / det, (sxx * sy - sx * sxy) / det


def solve_nonnegative(sums: np.ndarray) -> Optional[tuple[float, float]]:
    """As :func:`solve`, the scale constrained to be >= 0: where the unconstrained scale is negative
    (the relative stream is, for these pixels, ordered against the measurements: a wrong frame of
    the relative model), the constrained optimum is the boundary, scale 0 and the weighted mean of
    ``y`` as shift (a flat depth at the measured distance), not the inverted scene."""
    fit = solve(sums)
    if fit is not None and fit[0] >= 0:
        return fit
    return (0.0, float(sums[4] / sums[2])) if sums[2] > 0 else None


def _weighted_sums(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    wx = w * x  # plain sums, not BLAS dot products: no thread start-up for a few thousand numbers
    return np.array([np.sum(wx * x), np.sum(wx), np.sum(w), np.sum(wx * y), np.sum(w * y)])


def relative_mask(x: np.ndarray, sky_fraction: float) -> np.ndarray:
    """Pixels of a relative inverse-depth map that may be fitted: finite, and above
    ``sky_fraction`` of the map's 95th percentile (the sky and far range sit near 0)."""
    finite = np.isfinite(x)
    if not finite.any():
        return finite
    top = float(np.percentile(x[finite], 95))
    return finite & (x > sky_fraction * top) & (x > 0)


def measurement_sums(x: np.ndarray, y: np.ndarray, options: FitOptions = FitOptions()) -> Optional[np.ndarray]:
    """The robust fit of one measurement (see the module) as normal-equation sums of its inliers,
    normalised to a total weight of 1 (every measurement counts the same, dense or sparse).

    x: (N,) relative inverse depth; y: (N,) measured inverse depth in 1/m at the same pixels (pixels
    already screened by the caller). None when fewer than ``min_points`` usable pixels or inliers remain.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
    x, y = x[keep], y[keep]
    if x.size < options.min_points:
        return None
    w = 1.0 / y  # (N,) see the module: between plain inverse-depth residuals and relative ones
    inliers = np.ones(x.size, dtype=bool)
    for _ in range(options.iterations):
        fit = solve_nonnegative(_weighted_sums(x[inliers], y[inliers], w[inliers]))
        if fit is None:
            return None
        s, t = fit
        r = (s * x + t) / y - 1.0  # (N,) relative residual of every pixel, inliers or not
        centre = np.median(r[inliers])
        spread = 1.4826 * np.median(np.abs(r[inliers] - centre))
        inliers = np.abs(r - centre) <= options.rejection * max(spread, 1e-4)
        if inliers.sum() < options.min_points:
            return None
    sums = _weighted_sums(x[inliers], y[inliers], w[inliers])
    return sums / sums[2]


@dataclass(frozen=True)
class FitState:
    """The stream's fit: what a relative stream carries to be in metres. Plain data (no arrays
    shared with anything), replaced at each measurement, never changed.

    ``sums``: the discounted normal-equation sums of the measurements since the last reset;
    ``scale``, ``shift``: the fit used for the frames (metres = 1 / (scale * x + shift));
    ``measurements``: how many measurements the sums hold (0: ``scale``/``shift`` are the
    provisional fit, the approximate metres of the relative unit, until the first measurement).
    """

    scale: float
    shift: float = 0.0
    sums: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0))
    measurements: int = 0

    def forget(self) -> "FitState":
        """After a scene cut: the next measurement replaces the fit; until it comes, the frames keep
        the current one (nothing better is known)."""
        return FitState(self.scale, self.shift)


class FitFilter:
    """Smoothing of per-measurement fits over time: a running weighted least squares whose old
    sums are discounted by ``options.decay`` at every new measurement (half weight after
    ``half_life`` measurements). Between measurements the fit is constant, so the stream keeps the
    relative model's frame-to-frame consistency; the fit moves only as far as the measurements,
    pooled, say it should."""

    def __init__(self, options: FitOptions = FitOptions()):
        self.options = options

    def update(self, state: FitState, sums: Optional[np.ndarray]) -> FitState:
        """The state after one measurement (``sums`` from :func:`measurement_sums`; None: no
        usable measurement, the state is unchanged)."""
        if sums is None:
            return state
        pooled = self.options.decay * np.asarray(state.sums) + sums  # (5,)
        fit = solve_nonnegative(pooled)
        if fit is None:
            return state
        return FitState(fit[0], fit[1], tuple(float(v) for v in pooled), state.measurements + 1)


def to_metres(x: np.ndarray, state: FitState, max_depth: float) -> np.ndarray:
    """Relative inverse depth (H, W) -> depth in metres (H, W) float32 with the fit of ``state``:
    ``1 / (scale * x + shift)``, capped at ``max_depth`` (where the fitted inverse depth is at or
    below ``1 / max_depth``: the sky, the far range, and any non-positive value)."""
    floor = np.float32(1.0 / max_depth)
    inverse = np.float32(state.scale) * np.asarray(x, dtype=np.float32) + np.float32(state.shift)  # (H, W) 1/m
    inverse = np.where(np.isfinite(inverse), np.maximum(inverse, floor), floor)  # NaN/inf: no depth known, the cap
    return np.float32(1.0) / inverse
