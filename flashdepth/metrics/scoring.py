"""The scoring machinery: the metrics table and the bounded-memory sequence accumulator.

:data:`METRICS` is the one table of the metrics a sequence is scored with; evaluation, its
reports and the command line take their columns from it.

:class:`SequenceAccumulator` scores sequences too long to hold in memory: it keeps the
least-squares sufficient statistics and spills predictions to a memory-mapped file, then scores
in a second pass. :func:`flashdepth.metrics.depth_metrics` computes the same numbers directly
from the formulas, for sequences held in memory (and as the accumulator's test oracle).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..geometry import DEFAULT_MAX_DEPTH, check_max_depth
from .alignment import (ALIGNMENTS, DEFAULT_ALIGNMENT, get_alignment, EPS_DISPARITY, Alignment, FitStats, fit_from_sums, normal_sums,
                        streaming_median)
from .formulas import (abs_rel, boundary_f1, delta1, delta2, delta3, log10_error, log_error, pair_errors, relative_std,
                       sq_rel, squared_error, to_depth)


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

    def __init__(self, index: int, aligned: np.ndarray, gt: np.ndarray, max_depth: float,
                 alignment: Alignment = ALIGNMENTS[DEFAULT_ALIGNMENT]):
        self.index, self.aligned, self.gt, self.max_depth = index, aligned, gt, max_depth
        self.alignment = alignment

    @functools.cached_property
    def valid(self) -> np.ndarray:
        return self.alignment.scored(self.gt, self.max_depth)  # (H, W): the pixels the alignment scores

    @functools.cached_property
    def pred_depth(self) -> np.ndarray:
        return to_depth(self.aligned, self.max_depth)  # (H, W)

    @functools.cached_property
    def gt_depth(self) -> np.ndarray:
        return to_depth(self.gt, self.max_depth)  # (H, W)


class _PixelMean:
    """Mean of a per-pixel quantity over the valid pixels of the whole sequence."""

    def __init__(self, per_pixel: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.per_pixel, self.total, self.count = per_pixel, 0.0, 0

    def update(self, pair: FramePair) -> None:
        v = pair.valid
        self.total += float(self.per_pixel(pair.pred_depth[v], pair.gt_depth[v]).sum())
        self.count += int(v.sum())

    def value(self) -> Optional[float]:
        return self.total / self.count if self.count else None  # no valid pixel: missing, not perfect


class _PixelRootMean(_PixelMean):
    """Root of the mean of a per-pixel quantity (RMSE, RMSE log)."""

    def value(self) -> Optional[float]:
        mean = super().value()
        return None if mean is None else float(np.sqrt(mean))


class _SILog:
    """Scale-invariant log error over the valid pixels of the whole sequence (two running sums)."""

    def __init__(self):
        self.squares, self.total, self.count = 0.0, 0.0, 0

    def update(self, pair: FramePair) -> None:
        v = pair.valid
        e = log_error(pair.pred_depth[v], pair.gt_depth[v])  # (N,)
        self.squares += float((e ** 2).sum())
        self.total += float(e.sum())
        self.count += int(v.sum())

    def value(self) -> Optional[float]:
        if not self.count:
            return None
        return float(np.sqrt(self.squares / self.count - 0.5 * (self.total / self.count) ** 2))


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
    Metric("abs_rel", "mean |d - d*| / d* over valid pixels, depth after the alignment (default: one scale+shift "
           "per sequence in disparity)", False, lambda ctx: _PixelMean(abs_rel)),
    Metric("delta1", "share of valid pixels with max(d/d*, d*/d) < 1.25", True, lambda ctx: _PixelMean(delta1)),
    Metric("boundary_f1", "scale-invariant boundary F1 (Depth Pro), dense ground truth only", True,
           lambda ctx: _FrameMean(lambda p: boundary_f1(p.pred_depth, p.gt_depth)) if ctx.dense else _Constant(None)),
    Metric("scale_std", "relative std of the per-frame least-squares scales (temporal scale drift)", False,
           lambda ctx: _Constant(relative_std(np.asarray(ctx.frame_scales)))),
    Metric("tae", "temporal alignment error: AbsRel of consecutive frames reprojected with the camera poses", False,
           lambda ctx: _TAE(ctx) if ctx.intrinsics is not None and ctx.poses is not None else _Constant(None)),
    Metric("sq_rel", "mean (d - d*)^2 / d* over valid pixels", False, lambda ctx: _PixelMean(sq_rel)),
    Metric("rmse", "root mean squared depth error (metres once aligned)", False,
           lambda ctx: _PixelRootMean(squared_error)),
    Metric("rmse_log", "root mean squared ln d - ln d*", False,
           lambda ctx: _PixelRootMean(lambda pd, gd: log_error(pd, gd) ** 2)),
    Metric("log10", "mean |log10 d - log10 d*|", False, lambda ctx: _PixelMean(log10_error)),
    Metric("silog", "scale-invariant log error sqrt(mean(e^2) - 0.5 mean(e)^2), e = ln d - ln d*", False,
           lambda ctx: _SILog()),
    Metric("delta2", "share of valid pixels with max(d/d*, d*/d) < 1.25^2", True, lambda ctx: _PixelMean(delta2)),
    Metric("delta3", "share of valid pixels with max(d/d*, d*/d) < 1.25^3", True, lambda ctx: _PixelMean(delta3)),
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
                 spill_dir: Optional[str] = None, alignment: str = DEFAULT_ALIGNMENT):
        check_max_depth(max_depth)
        self.alignment = get_alignment(alignment)
        self.max_depth, self.per_frame = max_depth, per_frame
        self.spill, self.spill_dir = spill, spill_dir
        self.sums = np.zeros(5)
        self.frame_sums: list[np.ndarray] = []  # (5,) per frame
        self.preds: list = []
        self.file = None  # the spill file, opened at the first frame
        self.shape: Optional[tuple[int, int]] = None
        self.count = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        # Spilled predictions are float32 (what models produce); in memory they keep their precision.
        pred = np.asarray(pred, dtype=np.float32 if self.spill else np.float64)
        sums = normal_sums(pred, np.asarray(gt), self.max_depth)
        self.sums += sums
        self.frame_sums.append(sums)
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
        and frame scales are set here. When no pixel of the sequence is near enough to fit the
        alignment (ground truth beyond ``max_depth`` everywhere), nothing can be scored: every
        metric, the scale and the shift are None and valid_pixels is 0.
        """
        if self.count == 0:
            raise ValueError("no frames were added")
        if self.sums[2] == 0:
            self._close()
            return {**{name: None for name in METRICS}, "scale": None, "shift": None, "valid_pixels": 0}
        ctx = dataclasses.replace(context or SequenceContext(), max_depth=self.max_depth,
                                  frame_scales=tuple(fit_from_sums(*sums)[0] for sums in self.frame_sums))
        preds = self.preds
        if self.spill:
            self.file.flush()
            preds = np.memmap(self.file, dtype=np.float32, mode="r", shape=(self.count, *self.shape))
        scorers = {name: metric.scorer(ctx) for name, metric in METRICS.items()}
        valid = 0
        try:
            s, t = self.alignment.fit(FitStats(self.sums, lambda frames=preds: self._medians(frames, gt_at)))
            for i in range(self.count):
                gt = np.asarray(gt_at(i), dtype=np.float64)
                pred = np.asarray(preds[i], dtype=np.float64)  # (H, W)
                if self.per_frame:
                    v = self.alignment.scored(gt, self.max_depth)  # (H, W)
                    medians = (lambda: (float(np.median(pred[v])), float(np.median(gt[v])))) if v.any() else \
                        (lambda: (None, None))
                    fs, ft = self.alignment.fit(FitStats(self.frame_sums[i], medians))
                else:
                    fs, ft = s, t
                pair = FramePair(i, fs * pred + ft, gt, self.max_depth, self.alignment)
                for scorer in scorers.values():
                    scorer.update(pair)
                valid += int(pair.valid.sum())
        finally:
            del preds
            self._close()
        result = {name: scorer.value() for name, scorer in scorers.items()}
        result.update(scale=float("nan") if self.per_frame else s, shift=float("nan") if self.per_frame else t,
                      valid_pixels=valid)
        return result

    def _medians(self, preds, gt_at: Callable[[int], np.ndarray]) -> tuple[Optional[float], Optional[float]]:
        """Medians of the prediction and the ground truth over the scored pixels of the sequence,
        exact and in bounded memory (a few more passes over the spilled predictions and the ground truth)."""

        def values(of_prediction: bool):
            for i in range(self.count):
                gt = np.asarray(gt_at(i), dtype=np.float64)  # (H, W)
                v = self.alignment.scored(gt, self.max_depth)  # (H, W)
                yield np.asarray(preds[i], dtype=np.float64)[v] if of_prediction else gt[v]

        return streaming_median(lambda: values(True)), streaming_median(lambda: values(False))

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
