"""How a prediction is aligned to the ground truth before it is scored: the one table of
alignments (:data:`ALIGNMENTS`) and the least-squares fits they use. Pure NumPy.

Everything is in inverse depth (1/m for the ground truth). A fit uses the pixels whose
ground-truth inverse depth is at least ``1 / max_depth`` (so sky, invalid and far pixels do not
steer it), through the normal-equation sums of :func:`normal_sums`, which add up frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..geometry import DEFAULT_MAX_DEPTH

EPS_DISPARITY = 1e-3  # disparities are clipped to this before inversion (depth <= 1000)


def fit_from_sums(spp: float, sp: float, n: float, spg: float, sg: float) -> tuple[float, float]:
    """Least-squares (s, t) of gt ~ s * pred + t from the normal-equation sums."""
    det = spp * n - sp * sp
    if n == 0:
        return 1.0, 0.0
    if abs(det) <= 1e-12 * max(spp * n, 1e-300):
        # Degenerate (constant prediction): the best fit is the mean, with no scale.
        return 0.0, sg / n
    s = (spg * n - sp * sg) / det
    t = (spp * sg - sp * spg) / det
    return float(s), float(t)


def fit_scale_from_sums(spp: float, sp: float, n: float, spg: float, sg: float) -> tuple[float, float]:
    """Least-squares (s, 0) of gt ~ s * pred (no shift) from the same sums."""
    if n == 0 or spp == 0:
        return 1.0, 0.0
    return float(spg / spp), 0.0


def normal_sums(pred: np.ndarray, gt: np.ndarray, max_depth: float) -> np.ndarray:
    """The normal-equation sums [sum p^2, sum p, n, sum p g, sum g] of the fit gt ~ s * pred + t
    over the pixels with gt >= 1 / max_depth (any shape; sums of frames add up)."""
    mask = gt >= 1.0 / max_depth
    p = pred[mask].astype(np.float64)
    g = gt[mask].astype(np.float64)
    return np.array([p @ p, p.sum(), float(p.size), p @ g, g.sum()])


def align_scale_shift(pred: np.ndarray, gt: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH) -> tuple[float, float]:
    """(s, t) minimising |s * pred + t - gt|^2 over pixels with gt >= 1 / max_depth."""
    return fit_from_sums(*normal_sums(np.asarray(pred), np.asarray(gt), max_depth))


def relative_pixels(gt: np.ndarray, max_depth: float) -> np.ndarray:
    """The paper's scored pixels: every valid one (gt >= 0), sky and far ones at the clipped depth."""
    return gt >= 0


def metric_pixels(gt: np.ndarray, max_depth: float) -> np.ndarray:
    """The metric protocol's scored pixels: ground-truth depth within [1e-3, max_depth] (no sky)."""
    return (gt >= 1.0 / max_depth) & (gt <= 1.0 / EPS_DISPARITY)


@dataclass(frozen=True)
class Alignment:
    """One row of :data:`ALIGNMENTS`."""

    name: str
    description: str
    fit: Callable[[np.ndarray], tuple[float, float]]  # normal sums (5,) -> (scale, shift) in inverse depth
    scored: Callable[[np.ndarray, float], np.ndarray]  # (gt inverse depth, max_depth) -> mask of scored pixels
    in_metres: bool  # compared unaligned, so a model's output is first converted to 1/m (geometry.DEPTH_SCALE)


ALIGNMENTS: dict[str, Alignment] = {a.name: a for a in (
    Alignment("scale-shift", "least-squares scale and shift in inverse depth, per sequence (the paper's protocol, "
              "for relative models); scores every valid pixel, sky at the depth cap",
              lambda sums: fit_from_sums(*sums), relative_pixels, False),
    Alignment("scale", "least-squares scale in inverse depth, no shift, per sequence (models right up to scale); "
              "scores pixels with depth in [0.001, max depth]", lambda sums: fit_scale_from_sums(*sums),
              metric_pixels, False),
    Alignment("none", "no alignment: depth in metres as predicted (metric models; the Depth Anything V2 metric "
              "protocol); scores pixels with depth in [0.001, max depth]", lambda sums: (1.0, 0.0), metric_pixels,
              True),
)}
DEFAULT_ALIGNMENT = "scale-shift"
