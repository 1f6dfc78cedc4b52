"""Evaluation metrics as pure functions on NumPy arrays: the per-pixel formulas, the direct
scoring of a sequence held in memory, boundary F1 and temporal consistency. No state (the
scoring machinery is in :mod:`.scoring`, the alignments in :mod:`.alignment`).

Conventions (the paper's protocol): predictions and ground truth are *inverse depth*
("disparity"); ground truth marks invalid pixels with -1 and sky / infinitely far with 0.

* :func:`depth_metrics` aligns once per sequence (or per frame), converts both to depth as
  ``1 / max(x, 1e-3)``, clips depth to ``[1e-3, max_depth]`` and averages AbsRel and
  delta1 (max ratio < 1.25) over every pixel whose ground truth is >= 0 -- sky and far pixels
  included, at the clipped depth, as the published metric code does (the default alignment,
  'scale-shift'); it also gives the metric metrics of Depth Anything V2's metric evaluation.
* :func:`boundary_f1` is the scale-invariant boundary F1 of Depth Pro on one frame of depths.
* :func:`scale_std` and :func:`tae` measure temporal consistency.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..geometry import DEFAULT_MAX_DEPTH, Intrinsics, check_max_depth, unproject
from .alignment import (DEFAULT_ALIGNMENT, EPS_DISPARITY, FitStats, align_scale_shift, fit_from_sums, get_alignment,
                        normal_sums)


# ------------------------------------------------------------------------- depth metrics
def to_depth(disparity: np.ndarray, max_depth: float) -> np.ndarray:
    """Inverse depth -> depth ``1 / max(x, 1e-3)`` clipped to ``[1e-3, max_depth]`` (the protocol's)."""
    return np.clip(1.0 / np.clip(disparity, EPS_DISPARITY, None), EPS_DISPARITY, max_depth)


def abs_rel(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    """Per pixel |d - d*| / d*."""
    return np.abs(pred_depth - gt_depth) / gt_depth


def sq_rel(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    """Per pixel (d - d*)^2 / d*."""
    return (pred_depth - gt_depth) ** 2 / gt_depth


def squared_error(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    """Per pixel (d - d*)^2 (RMSE is the root of its mean)."""
    return (pred_depth - gt_depth) ** 2


def log_error(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    """Per pixel ln d - ln d* (RMSE log and SILog are built on it)."""
    return np.log(pred_depth) - np.log(gt_depth)


def log10_error(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    """Per pixel |log10 d - log10 d*|."""
    return np.abs(np.log10(pred_depth) - np.log10(gt_depth))


def delta(pred_depth: np.ndarray, gt_depth: np.ndarray, k: int = 1) -> np.ndarray:
    """Per pixel max(d / d*, d* / d) < 1.25^k."""
    return np.maximum(pred_depth / gt_depth, gt_depth / pred_depth) < 1.25 ** k


def delta1(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    return delta(pred_depth, gt_depth, 1)


def delta2(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    return delta(pred_depth, gt_depth, 2)


def delta3(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    return delta(pred_depth, gt_depth, 3)


def silog(log_errors: np.ndarray) -> float:
    """Scale-invariant log error of the pixels' ln d - ln d*: sqrt(mean(e^2) - 0.5 mean(e)^2)
    (lambda 0.5, unscaled, as in Depth Anything V2's metric evaluation)."""
    return float(np.sqrt(np.mean(log_errors ** 2) - 0.5 * np.mean(log_errors) ** 2))


def depth_metrics(pred: np.ndarray, gt: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH, per_frame: bool = False,
                  alignment: str = DEFAULT_ALIGNMENT) -> dict:
    """Every sequence score of a sequence of inverse depths held in memory.

    pred, gt: (T, H, W) (or (H, W)) inverse depth; gt -1 = invalid, 0 = sky. ``alignment`` is a
    row of :data:`flashdepth.metrics.ALIGNMENTS`: 'scale-shift' (the paper's protocol, any
    prediction scale), 'scale', 'median-scale' or 'none' (then ``pred`` is in 1/m). ``per_frame`` fits per frame
    instead of once for the sequence.

    Returns abs_rel, delta1, boundary_f1 (mean over frames), scale_std, tae (None: no poses here;
    see :func:`tae`), sq_rel, rmse, rmse_log, log10, silog, delta2, delta3 -- each over the pixels
    the alignment scores, pooled over the sequence -- and "scale", "shift" (of the sequence fit;
    NaN with ``per_frame``), "valid_pixels". With no ground-truth pixel within ``max_depth``,
    every metric, the scale and the shift are None (missing, not perfect) and valid_pixels is 0.
    Computed directly from the formulas; :class:`flashdepth.metrics.SequenceAccumulator` computes
    the same in bounded memory.
    """
    row = get_alignment(alignment)
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}; "
                         "resize the prediction to the ground truth first")
    check_max_depth(max_depth)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    names = ("abs_rel", "delta1", "boundary_f1", "scale_std", "tae", "sq_rel", "rmse", "rmse_log", "log10", "silog",
             "delta2", "delta3")
    if not (gt >= 1.0 / max_depth).any():  # nothing to fit: missing, not perfect
        return {**{name: None for name in names}, "scale": None, "shift": None, "valid_pixels": 0}
    valid = row.scored(gt, max_depth)  # (T, H, W)

    def stats(p: np.ndarray, g: np.ndarray, v: np.ndarray) -> FitStats:
        medians = (lambda: (float(np.median(p[v])), float(np.median(g[v])))) if v.any() else (lambda: (None, None))
        return FitStats(normal_sums(p, g, max_depth), medians)

    frame_sums = [normal_sums(p, g, max_depth) for p, g in zip(pred, gt)]
    s, t = row.fit(stats(pred, gt, valid))
    if per_frame:
        fits = np.array([row.fit(stats(p, g, v)) for p, g, v in zip(pred, gt, valid)])  # (T, 2)
        aligned = fits[:, 0, None, None] * pred + fits[:, 1, None, None]  # (T, H, W)
    else:
        aligned = s * pred + t  # (T, H, W)
    pred_depth, gt_depth = to_depth(aligned, max_depth), to_depth(gt, max_depth)  # (T, H, W) each
    pd, gd = pred_depth[valid], gt_depth[valid]  # (N,) each
    n = int(valid.sum())
    mean = (lambda values: float(np.mean(values))) if n else (lambda values: None)
    return {
        "abs_rel": mean(abs_rel(pd, gd)),
        "delta1": mean(delta1(pd, gd)),
        "boundary_f1": float(np.mean([boundary_f1(p, g) for p, g in zip(pred_depth, gt_depth)])),
        "scale_std": relative_std(np.array([fit_from_sums(*sums)[0] for sums in frame_sums])),
        "tae": None,
        "sq_rel": mean(sq_rel(pd, gd)),
        "rmse": float(np.sqrt(np.mean(squared_error(pd, gd)))) if n else None,
        "rmse_log": float(np.sqrt(np.mean(log_error(pd, gd) ** 2))) if n else None,
        "log10": mean(log10_error(pd, gd)),
        "silog": silog(log_error(pd, gd)) if n else None,
        "delta2": mean(delta2(pd, gd)),
        "delta3": mean(delta3(pd, gd)),
        "scale": float("nan") if per_frame else s,
        "shift": float("nan") if per_frame else t,
        "valid_pixels": n,
    }


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
    return relative_std(scales)


def relative_std(scales: np.ndarray) -> float:
    """std / |mean| of a series of scales (0 for fewer than two; NaN for a zero mean)."""
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
