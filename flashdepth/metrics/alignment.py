"""How a prediction is aligned to the ground truth before it is scored: the one table of
alignments (:data:`ALIGNMENTS`) and the least-squares fits they use. Pure NumPy.

Everything is in inverse depth (1/m for the ground truth). A fit uses the pixels whose
ground-truth inverse depth is at least ``1 / max_depth`` (so sky, invalid and far pixels do not
steer it), through the normal-equation sums of :func:`normal_sums`, which add up frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

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


def _sort_keys(values: np.ndarray) -> np.ndarray:
    """float64 values -> uint64 keys in the same order (IEEE 754: flip negatives, set the sign bit
    of the rest), so that a median can be found digit by digit without float rounding."""
    bits = np.ascontiguousarray(values, dtype=np.float64).ravel().view(np.uint64)
    return np.where(bits >> np.uint64(63) == 1, ~bits, bits | np.uint64(1 << 63))


def _key_value(key: np.uint64) -> float:
    bits = key & ~np.uint64(1 << 63) if key >> np.uint64(63) == 1 else ~key
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _kth_smallest(chunks: Callable[[], Iterable[np.ndarray]], k: int, count: int, limit: int) -> float:
    """The k-th smallest (0-based) of ``count`` values streamed by ``chunks()`` (called once per pass):
    a radix selection on 16-bit digits of the sort keys, then an in-memory partition once at most
    ``limit`` values share the chosen prefix. Exact; memory bounded by ``limit``."""
    prefix, shift = np.uint64(0), 64  # the candidates' keys start with these (64 - shift) bits

    def candidates(values: np.ndarray, prefix_bits: int, prefix_value: np.uint64) -> np.ndarray:
        keys = _sort_keys(values)
        return keys if prefix_bits == 64 else keys[keys >> np.uint64(prefix_bits) == prefix_value]

    while count > limit and shift > 0:
        digit_shift = shift - 16
        histogram = np.zeros(1 << 16, dtype=np.int64)
        for values in chunks():
            digits = (candidates(values, shift, prefix) >> np.uint64(digit_shift)) & np.uint64(0xFFFF)
            histogram += np.bincount(digits.astype(np.int64), minlength=1 << 16)
        below = np.cumsum(histogram)
        digit = int(np.searchsorted(below, k, side="right"))  # the first digit with more than k below it
        k -= int(below[digit - 1]) if digit else 0
        count = int(histogram[digit])
        prefix, shift = (prefix << np.uint64(16)) | np.uint64(digit), digit_shift
    keys = np.concatenate([candidates(values, shift, prefix) for values in chunks()])
    return _key_value(np.partition(keys, k)[k])


def streaming_median(chunks: Callable[[], Iterable[np.ndarray]], limit: int = 1 << 22) -> Optional[float]:
    """The median (NumPy's: the mean of the two middle values for an even count) of every value
    that ``chunks()`` yields, in bounded memory: ``chunks`` is called again for each pass over the
    data (usually three or four). None when there are no values."""
    count = sum(int(np.size(values)) for values in chunks())
    if count == 0:
        return None
    low = _kth_smallest(chunks, (count - 1) // 2, count, limit)
    high = low if count % 2 else _kth_smallest(chunks, count // 2, count, limit)
    return 0.5 * (low + high)


@dataclass
class FitStats:
    """What a fit may use: the normal sums over the fit pixels, and the medians of the prediction
    and of the ground truth over the scored pixels (computed only when asked: they need a pass
    over the data)."""

    sums: np.ndarray  # (5,) normal_sums
    medians: Callable[[], tuple[Optional[float], Optional[float]]]  # () -> (median pred, median gt)


def fit_median_scale(stats: FitStats) -> tuple[float, float]:
    """(median(gt) / median(pred), 0) in inverse depth: the prediction's median brought to the
    ground truth's (for an odd number of pixels, the same as scaling depth by the ratio of its
    medians); no alignment when the prediction's median is not positive."""
    pred, gt = stats.medians()
    if pred is None or gt is None or not pred > 0:
        return 1.0, 0.0
    return float(gt / pred), 0.0


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
    fit: Callable[[FitStats], tuple[float, float]]  # -> (scale, shift) in inverse depth
    scored: Callable[[np.ndarray, float], np.ndarray]  # (gt inverse depth, max_depth) -> mask of scored pixels
    in_metres: bool  # compared unaligned, so a model's output is first converted to 1/m (geometry.DEPTH_SCALE)


ALIGNMENTS: dict[str, Alignment] = {a.name: a for a in (
    Alignment("scale-shift", "least-squares scale and shift in inverse depth, per sequence (the paper's protocol, "
              "for relative models); scores every valid pixel, sky at the depth cap",
              lambda stats: fit_from_sums(*stats.sums), relative_pixels, False),
    Alignment("scale", "least-squares scale in inverse depth, no shift, per sequence (models right up to scale); "
              "scores pixels with depth in [0.001, max depth]", lambda stats: fit_scale_from_sums(*stats.sums),
              metric_pixels, False),
    Alignment("median-scale", "scale that matches the medians of prediction and ground truth over the scored "
              "pixels, per sequence; scores pixels with depth in [0.001, max depth]", fit_median_scale,
              metric_pixels, False),
    Alignment("none", "no alignment: depth in metres as predicted (metric models; the Depth Anything V2 metric "
              "protocol); scores pixels with depth in [0.001, max depth]", lambda stats: (1.0, 0.0), metric_pixels,
              True),
)}
DEFAULT_ALIGNMENT = "scale-shift"


def get_alignment(name: str) -> Alignment:
    """The row of ``name``; an unknown name is an error listing the valid ones."""
    from ..errors import lookup

    return lookup(ALIGNMENTS, name, "alignment")
