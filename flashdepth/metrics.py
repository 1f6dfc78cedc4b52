"""Evaluation metrics, as pure functions on NumPy arrays.

Conventions (the paper's protocol): predictions and ground truth are *inverse depth*
("disparity"); ground truth marks invalid pixels with -1 and sky / infinitely far with 0.

* :func:`align_scale_shift` fits ``gt ~ s * pred + t`` by least squares over the pixels whose
  ground-truth disparity is at least ``1 / max_depth`` (so sky, invalid and far pixels do not
  steer the fit).
* :func:`depth_metrics` aligns once per sequence (or per frame), converts both to depth as
  ``1 / max(x, 1e-3)``, clips depth to ``[1e-3, max_depth]`` and averages AbsRel and
  delta1 (max ratio < 1.25) over every pixel whose ground truth is >= 0 -- sky and far pixels
  included, at the clipped depth, as the published metric code does.
* :func:`boundary_f1` is the scale-invariant boundary F1 of Depth Pro on one frame of depths.
* :func:`scale_std` and :func:`tae` measure temporal consistency.

:data:`METRICS` is the one table of the metrics a sequence is scored with; evaluation, its
reports and the command line take their columns from it.

:class:`SequenceAccumulator` computes the same numbers for sequences too long to hold in
memory: it keeps the least-squares sufficient statistics and spills predictions to a
memory-mapped file, then scores in a second pass.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .geometry import DEFAULT_MAX_DEPTH, Intrinsics, unproject

EPS_DISPARITY = 1e-3  # disparities are clipped to this before inversion (depth <= 1000)


# ----------------------------------------------------------------------------- alignment
def _fit_from_sums(spp: float, sp: float, n: float, spg: float, sg: float) -> tuple[float, float]:
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


def _sums(pred: np.ndarray, gt: np.ndarray, max_depth: float) -> np.ndarray:
    mask = gt >= 1.0 / max_depth
    p = pred[mask].astype(np.float64)
    g = gt[mask].astype(np.float64)
    return np.array([p @ p, p.sum(), float(p.size), p @ g, g.sum()])


def align_scale_shift(pred: np.ndarray, gt: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH) -> tuple[float, float]:
    """(s, t) minimising |s * pred + t - gt|^2 over pixels with gt >= 1 / max_depth."""
    return _fit_from_sums(*_sums(np.asarray(pred), np.asarray(gt), max_depth))


# ------------------------------------------------------------------------- depth metrics
def _to_depth(disparity: np.ndarray, max_depth: float) -> np.ndarray:
    return np.clip(1.0 / np.clip(disparity, EPS_DISPARITY, None), EPS_DISPARITY, max_depth)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH, per_frame: bool = False) -> dict:
    """AbsRel and delta1 of a sequence of inverse depths.

    pred, gt: (T, H, W) (or (H, W)) inverse depth; gt -1 = invalid, 0 = sky.
    ``per_frame`` fits a scale and shift per frame instead of one for the sequence.
    Returns every metric of :data:`METRICS` (boundary F1 over the frames; TAE None without
    poses) and "scale", "shift", "valid_pixels" (scale/shift of the sequence fit; NaN with
    ``per_frame``).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}; "
                         "resize the prediction to the ground truth first")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    acc = SequenceAccumulator(max_depth=max_depth, per_frame=per_frame, spill=False)
    for p, g in zip(pred, gt):
        acc.add(p, g)
    return acc.finish(lambda i: gt[i])


# ------------------------------------------------------------------------- boundary F1
def _edges(d: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour pairs whose depth ratio exceeds t, in four directions (left, top, right, bottom)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        right = (d[:, 1:] / d[:, :-1]) > t
        left = (d[:, :-1] / d[:, 1:]) > t
        bottom = (d[1:, :] / d[:-1, :]) > t
        top = (d[:-1, :] / d[1:, :]) > t
    return left, top, right, bottom


def _f1_at(pred: np.ndarray, gt: np.ndarray, t: float) -> float:
    recall = precision = 0.0
    for p, g in zip(_edges(pred, t), _edges(gt, t)):
        hits = np.count_nonzero(p & g)
        recall += hits / max(np.count_nonzero(g), 1)
        precision += hits / max(np.count_nonzero(p), 1)
    recall, precision = recall / 4, precision / 4
    if recall + precision == 0:
        return 0.0
    return 2 * recall * precision / (recall + precision)


def boundary_f1(pred_depth: np.ndarray, gt_depth: np.ndarray, t_min: float = 1.05, t_max: float = 1.25,
                n: int = 10) -> float:
    """Scale-invariant boundary F1 (Depth Pro) of one frame of *depths* (H, W).

    Boundaries are neighbouring pixel pairs whose depth ratio exceeds t, in four directions;
    F1 is averaged over thresholds t in linspace(t_min, t_max, n) with weights proportional to t.
    """
    pred_depth = np.asarray(pred_depth, dtype=np.float64)
    gt_depth = np.asarray(gt_depth, dtype=np.float64)
    if pred_depth.ndim != 2 or pred_depth.shape != gt_depth.shape:
        raise ValueError(f"boundary_f1 takes two (H, W) depth maps of one size, got {pred_depth.shape} and {gt_depth.shape}")
    thresholds = np.linspace(t_min, t_max, n)
    weights = thresholds / thresholds.sum()
    return float(sum(w * _f1_at(pred_depth, gt_depth, t) for t, w in zip(thresholds, weights)))


# ------------------------------------------------------------------ temporal consistency
def scale_std(pred: np.ndarray, gt: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH) -> float:
    """Relative standard deviation of the per-frame least-squares scales (0 = perfectly stable).

    Needs only depth: a model whose scale drifts from frame to frame needs a different scale
    per frame to match the ground truth.
    """
    scales = np.array([align_scale_shift(p, g, max_depth)[0] for p, g in zip(pred, gt)])
    return _relative_std(scales)


def _relative_std(scales: np.ndarray) -> float:
    if scales.size < 2:
        return 0.0
    mean = np.abs(scales.mean())
    return float(scales.std() / mean) if mean > 0 else float("nan")


def tae(depths: np.ndarray, intrinsics: np.ndarray, poses: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH) -> float:
    """Temporal alignment error: mean AbsRel between frame i's depth reprojected into frame i+1
    and frame i+1's depth there, both directions.

    depths: (T, H, W) aligned metric depths (<= 0 or non-finite = unknown); intrinsics: (T, 4)
    fx fy cx cy or (T, 3, 3); poses: (T, 4, 4) camera-to-world.
    """
    depths = np.asarray(depths, dtype=np.float64)
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.ndim == 3:
        k = np.stack([k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]], axis=1)
    poses = np.asarray(poses, dtype=np.float64)
    errors = []
    for i in range(len(depths) - 1):
        errors += pair_errors(i, i + 1, depths[i], depths[i + 1], k, poses, max_depth)
    return float(np.mean(errors)) if errors else float("nan")


def pair_errors(i: int, j: int, di: np.ndarray, dj: np.ndarray, intrinsics: np.ndarray, poses: np.ndarray,
                max_depth: float) -> list[float]:
    """Reprojection errors of frames i -> j and j -> i (the ones that land on valid pixels)."""
    errors = []
    for a, b, da, db in ((i, j, di, dj), (j, i, dj, di)):
        err = reprojection_error(da, db, intrinsics[a], intrinsics[b], np.linalg.inv(poses[b]) @ poses[a], max_depth)
        if err is not None:
            errors.append(err)
    return errors


def reprojection_error(da, db, ka, kb, b_from_a, max_depth) -> Optional[float]:
    """Mean AbsRel between depth map ``da`` moved into camera b (intrinsics fx fy cx cy ``ka``,
    ``kb``; 4x4 ``b_from_a``) and ``db`` at the pixels the points land on (nearest); None if no
    point lands on a valid pixel."""
    h, w = da.shape
    near = np.where(da <= max_depth, da, np.nan)  # (H, W): farther than the cap = no point
    points = unproject(near, Intrinsics(*map(float, ka)), dtype=np.float64)  # (N, 3) in camera a
    pts = b_from_a[:3, :3] @ points.T + b_from_a[:3, 3:4]  # (3, N) in camera b
    front = pts[2] > 1e-6
    pts = pts[:, front]
    ub = np.round(pts[0] / pts[2] * kb[0] + kb[2]).astype(np.int64)
    vb = np.round(pts[1] / pts[2] * kb[1] + kb[3]).astype(np.int64)
    inside = (ub >= 0) & (ub < w) & (vb >= 0) & (vb < h)
    if not inside.any():
        return None
    target = db[vb[inside], ub[inside]]
    ok = np.isfinite(target) & (target > 0) & (target <= max_depth)
    if not ok.any():
        return None
    return float(np.mean(np.abs(pts[2][inside][ok] - target[ok]) / target[ok]))


# -------------------------------------------------------------------- the metrics table
@dataclass
class SequenceContext:
    """What a metric may need about the sequence being scored."""

    max_depth: float = DEFAULT_MAX_DEPTH
    dense: bool = True  # ground truth covers the image (boundary F1 needs it)
    frame_scales: tuple[float, ...] = ()  # per-frame least-squares scales (first pass)
    intrinsics: Optional[np.ndarray] = None  # (T, 4) fx fy cx cy
    poses: Optional[np.ndarray] = None  # (T, 4, 4) camera-to-world


class FramePair:
    """One aligned frame and its ground truth, with the derived arrays computed once and shared."""

    def __init__(self, index: int, aligned: np.ndarray, gt: np.ndarray, max_depth: float):
        self.index, self.aligned, self.gt, self.max_depth = index, aligned, gt, max_depth

    @functools.cached_property
    def valid(self) -> np.ndarray:
        return self.gt >= 0  # (H, W): sky and far pixels count, at the clipped depth

    @functools.cached_property
    def pred_depth(self) -> np.ndarray:
        return _to_depth(self.aligned, self.max_depth)  # (H, W)

    @functools.cached_property
    def gt_depth(self) -> np.ndarray:
        return _to_depth(self.gt, self.max_depth)  # (H, W)


class _PixelMean:
    """Mean of a per-pixel quantity over the valid pixels of the whole sequence."""

    def __init__(self, per_pixel: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.per_pixel, self.total, self.count = per_pixel, 0.0, 0

    def update(self, pair: FramePair) -> None:
        v = pair.valid
        self.total += float(self.per_pixel(pair.pred_depth[v], pair.gt_depth[v]).sum())
        self.count += int(v.sum())

    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


class _FrameMean:
    """Mean over frames of a per-frame score."""

    def __init__(self, per_frame: Callable[[FramePair], float]):
        self.per_frame, self.scores = per_frame, []

    def update(self, pair: FramePair) -> None:
        self.scores.append(self.per_frame(pair))

    def value(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("nan")


class _Constant:
    def __init__(self, value: Optional[float]):
        self._value = value

    def update(self, pair: FramePair) -> None:
        pass

    def value(self) -> Optional[float]:
        return self._value


class _TAE:
    """Reprojection error between consecutive aligned frames (needs intrinsics and poses)."""

    def __init__(self, ctx: SequenceContext):
        self.ctx, self.previous, self.errors = ctx, None, []

    def update(self, pair: FramePair) -> None:
        depth = 1.0 / np.clip(pair.aligned, EPS_DISPARITY, None)  # (H, W) unclipped far side
        if self.previous is not None:
            self.errors += pair_errors(pair.index - 1, pair.index, self.previous, depth, self.ctx.intrinsics,
                                       self.ctx.poses, self.ctx.max_depth)
        self.previous = depth

    def value(self) -> Optional[float]:
        return float(np.mean(self.errors)) if self.errors else None


def _abs_rel(pd: np.ndarray, gd: np.ndarray) -> np.ndarray:
    return np.abs(pd - gd) / gd


def _delta1(pd: np.ndarray, gd: np.ndarray) -> np.ndarray:
    return np.maximum(pd / gd, gd / pd) < 1.25


@dataclass(frozen=True)
class Metric:
    """One row of :data:`METRICS`: ``scorer(ctx)`` returns an object fed every aligned frame
    (``update(pair)``) whose ``value()`` is the sequence's score, or None when the metric does not
    apply to the sequence (e.g. boundary F1 on sparse ground truth)."""

    name: str
    description: str
    higher_is_better: bool
    scorer: Callable[[SequenceContext], Any]


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("abs_rel", "mean |d - d*| / d* over valid pixels, depth after one scale+shift per sequence in disparity",
           False, lambda ctx: _PixelMean(_abs_rel)),
    Metric("delta1", "share of valid pixels with max(d/d*, d*/d) < 1.25", True, lambda ctx: _PixelMean(_delta1)),
    Metric("boundary_f1", "scale-invariant boundary F1 (Depth Pro), dense ground truth only", True,
           lambda ctx: _FrameMean(lambda p: boundary_f1(p.pred_depth, p.gt_depth)) if ctx.dense else _Constant(None)),
    Metric("scale_std", "relative std of the per-frame least-squares scales (temporal scale drift)", False,
           lambda ctx: _Constant(_relative_std(np.asarray(ctx.frame_scales)))),
    Metric("tae", "temporal alignment error: AbsRel of consecutive frames reprojected with the camera poses", False,
           lambda ctx: _TAE(ctx) if ctx.intrinsics is not None and ctx.poses is not None else _Constant(None)),
)}


# ---------------------------------------------------------------- bounded-memory scoring
class SequenceAccumulator:
    """Score a long sequence in bounded memory, with every metric of :data:`METRICS`.

    ``add(pred, gt)`` per frame (inverse depths at the ground truth's size) accumulates the
    least-squares sums and writes the prediction to a memory-mapped spill file; ``finish(gt_at)``
    fits the sequence's scale and shift and makes a second pass, reading each frame's ground
    truth again through ``gt_at(i)`` and feeding every metric.
    """

    def __init__(self, max_depth: float = DEFAULT_MAX_DEPTH, per_frame: bool = False, spill: bool = True,
                 spill_dir: Optional[str] = None):
        self.max_depth, self.per_frame = max_depth, per_frame
        self.spill, self.spill_dir = spill, spill_dir
        self.sums = np.zeros(5)
        self.frame_fits: list[tuple[float, float]] = []
        self.preds: list = []
        self.file = None  # the spill file, opened at the first frame
        self.shape: Optional[tuple[int, int]] = None
        self.count = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        # Spilled predictions are float32 (what models produce); in memory they keep their precision.
        pred = np.asarray(pred, dtype=np.float32 if self.spill else np.float64)
        sums = _sums(pred, np.asarray(gt), self.max_depth)
        self.sums += sums
        self.frame_fits.append(_fit_from_sums(*sums))
        if not self.spill:
            self.preds.append(pred)
        else:
            if self.file is None:
                self.shape = pred.shape
                self.file = tempfile.TemporaryFile(dir=self.spill_dir)
            self.file.write(np.ascontiguousarray(pred).tobytes())
        self.count += 1

    def finish(self, gt_at: Callable[[int], np.ndarray], context: Optional[SequenceContext] = None) -> dict:
        """Second pass -> {metric name: value or None, "scale", "shift", "valid_pixels"}.

        ``context`` supplies what some metrics need (density, intrinsics, poses); its max_depth
        and frame scales are set here.
        """
        if self.count == 0:
            raise ValueError("no frames were added")
        ctx = dataclasses.replace(context or SequenceContext(), max_depth=self.max_depth,
                                  frame_scales=tuple(f[0] for f in self.frame_fits))
        preds = self.preds
        if self.spill:
            self.file.flush()
            preds = np.memmap(self.file, dtype=np.float32, mode="r", shape=(self.count, *self.shape))
        scorers = {name: metric.scorer(ctx) for name, metric in METRICS.items()}
        s, t = _fit_from_sums(*self.sums)
        valid = 0
        try:
            for i in range(self.count):
                gt = np.asarray(gt_at(i), dtype=np.float64)
                fs, ft = self.frame_fits[i] if self.per_frame else (s, t)
                pair = FramePair(i, fs * np.asarray(preds[i], dtype=np.float64) + ft, gt, self.max_depth)
                for scorer in scorers.values():
                    scorer.update(pair)
                valid += int(pair.valid.sum())
        finally:
            if self.spill:
                del preds
                self.file.close()
        result = {name: scorer.value() for name, scorer in scorers.items()}
        result.update(scale=float("nan") if self.per_frame else s, shift=float("nan") if self.per_frame else t,
                      valid_pixels=valid)
        return result
