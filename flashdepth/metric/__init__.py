"""Metric streams from relative models: a relative stream's scale and shift in inverse depth,
fitted robustly to a metric model run every N frames (:class:`MetricModelReference`) or to sparse
measurements (:class:`AnchorReference`, from :func:`read_anchors`), smoothed over time, applied to
every frame (:class:`AlignedSession`). docs/metric.md says how and what it costs."""

from .anchors import COLUMNS, Anchors, read_anchors
from .fit import FitFilter, FitOptions, FitState, measurement_sums, relative_mask, solve, solve_nonnegative, to_metres
from .stream import ANCHORS_MAX_DEPTH, AlignedSession, AnchorReference, MetricFrom, MetricModelReference, Reference

__all__ = ["ANCHORS_MAX_DEPTH", "AlignedSession", "AnchorReference", "Anchors", "COLUMNS", "FitFilter", "FitOptions",
           "FitState", "MetricFrom", "MetricModelReference", "Reference", "measurement_sums", "read_anchors",
           "relative_mask", "solve", "solve_nonnegative", "to_metres"]
