"""Evaluation metrics: the alignments (:mod:`.alignment`, the :data:`ALIGNMENTS` table), the pure
formulas (:mod:`.formulas`) and the scoring machinery that applies them to whole sequences
(:mod:`.scoring`: the :data:`METRICS` table and :class:`SequenceAccumulator`); saved predictions
of other methods are read by :mod:`.predictions`.

Conventions (the paper's protocol): predictions and ground truth are *inverse depth*
("disparity"); ground truth marks invalid pixels with -1 and sky / infinitely far with 0.
"""

from .alignment import (ALIGNMENTS, DEFAULT_ALIGNMENT, EPS_DISPARITY, Alignment, FitStats, align_scale_shift,
                        fit_from_sums, fit_median_scale, fit_scale_from_sums, normal_sums, streaming_median)
from .formulas import (abs_rel, boundary_f1, delta, delta1, delta2, delta3, depth_metrics, log10_error, log_error,
                       pair_errors, relative_std, reprojection_error, scale_std, silog, sq_rel, squared_error, tae,
                       to_depth)
from .scoring import METRICS, FramePair, Metric, SequenceAccumulator, SequenceContext

__all__ = ["ALIGNMENTS", "DEFAULT_ALIGNMENT", "EPS_DISPARITY", "METRICS", "Alignment", "FitStats", "FramePair", "Metric",
           "SequenceAccumulator", "SequenceContext", "abs_rel", "align_scale_shift", "boundary_f1", "delta", "delta1",
           "delta2", "delta3", "depth_metrics", "fit_from_sums", "fit_median_scale", "fit_scale_from_sums", "log10_error", "log_error",
           "normal_sums", "pair_errors", "relative_std", "reprojection_error", "scale_std", "silog", "sq_rel",
           "squared_error", "streaming_median", "tae", "to_depth"]
