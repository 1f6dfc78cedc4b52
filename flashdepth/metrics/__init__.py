"""Evaluation metrics: pure formulas (:mod:`.formulas`) and the scoring machinery that applies them
to whole sequences (:mod:`.scoring`: the :data:`METRICS` table and :class:`SequenceAccumulator`).

Conventions (the paper's protocol): predictions and ground truth are *inverse depth*
("disparity"); ground truth marks invalid pixels with -1 and sky / infinitely far with 0.
"""

from .formulas import (EPS_DISPARITY, abs_rel, align_scale_shift, boundary_f1, delta1, depth_metrics,
                       fit_from_sums, normal_sums, pair_errors, relative_std, reprojection_error, scale_std, tae,
                       to_depth)
from .scoring import METRICS, FramePair, Metric, SequenceAccumulator, SequenceContext

__all__ = ["EPS_DISPARITY", "METRICS", "FramePair", "Metric", "SequenceAccumulator", "SequenceContext", "abs_rel",
           "align_scale_shift", "boundary_f1", "delta1", "depth_metrics", "fit_from_sums", "normal_sums",
           "pair_errors", "relative_std", "reprojection_error", "scale_std", "tae", "to_depth"]
