"""A relative stream in metres: :class:`AlignedSession` wraps a session and a reference (a metric
model run every N frames, or anchors) and returns depth in metres for every frame.

The relative model runs on every frame at full resolution, as before; at the frames a reference
measures, its inverse depth and the measurement's give one robust fit (:mod:`.fit`), pooled with
the earlier ones by a running weighted least squares with forgetting; every frame is then
``1 / (scale * x + shift)`` with the current pooled fit. Between measurements the fit does not
move, so the output keeps the relative model's temporal consistency and sharpness and takes its
scale from the references.

This module knows sessions only by what it calls (``step``, ``reset``, ``unit``, ``config``):
:meth:`flashdepth.inference.session.SessionSpec.open` builds one from ``metric_from`` or
``anchors``; in Python, wrap any session::

    relative = DepthSession(flashdepth.load_model("flashdepth-s"))
    metric = DepthSession(flashdepth.load_model("depth-anything-v2-metric-outdoor-small"))
    session = AlignedSession(relative, MetricModelReference(metric, every=5))
    for frame in frames:
        metres = session.step(frame)  # (H, W) float32 metres
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Protocol

import numpy as np

from ..config import UNITS, OutputUnit
from ..errors import ConfigError, OptionValueError
from ..geometry import DEPTH_SCALE
from .anchors import Anchors
from .fit import FitFilter, FitOptions, FitState, measurement_sums, relative_mask, to_metres

#: depth cap of anchored streams, metres (the evaluation's clip of inverse depth, 1e-3, is the same)
ANCHORS_MAX_DEPTH = 1000.0

#: (rows, cols, inverse depth in 1/m) of the pixels a reference measured in one frame
Measurement = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class MetricFrom:
    """``MODEL[:EVERY]``: a metric model (a registered name or a checkpoint path) run every
    ``every`` frames (the first frame of a stream and of each scene cut always)."""

    model: str
    every: int = 1

    def __post_init__(self):
        if not self.model:
            raise ConfigError("metric_from needs a metric model: 'MODEL' or 'MODEL:EVERY', "
                              "e.g. 'depth-anything-v2-metric-outdoor-small:5'")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise OptionValueError("metric_from", f"{self.model}:{self.every}",
                                   "EVERY is a number of frames, 1 or more (MODEL:EVERY)")

    @classmethod
    def parse(cls, text: str) -> "MetricFrom":
        model, colon, every = str(text).rpartition(":")
        if not colon or not every.strip().lstrip("-").isdigit():  # no EVERY (a path may hold ':' too)
            return cls(str(text))
        return cls(model, int(every))

    def __str__(self) -> str:
        return f"{self.model}:{self.every}"


class Reference(Protocol):
    """Where the metres come from. ``measure`` is called for every frame and returns the pixels
    it measured in that frame, or None; ``cut`` and ``reset`` say a scene cut or a new stream."""

    max_depth: float  # depth cap of the output, metres

    def measure(self, image, shape: tuple[int, int], since_cut: int, index: int) -> Optional[Measurement]: ...

    def cut(self) -> None: ...

    def reset(self) -> None: ...

    def describe(self) -> str: ...


def _grid(mask: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels of ``mask`` on a regular grid of about ``max_points`` pixels."""
    h, w = mask.shape
    stride = max(1, math.ceil(math.sqrt(h * w / max_points)))
    rows, cols = np.nonzero(mask[::stride, ::stride])
    return rows * stride, cols * stride


class MetricModelReference:
    """A metric model's session, run on the frames ``every`` apart (counted from the stream's start
    and from each scene cut), at its own resolution, on the same frames; its depth comes back at
    the frame's size. Pixels at or beyond ``options.far_fraction`` of its cap (``max_depth``:
    the model's ``dpt.max_depth`` unless given) are not measured: a sigmoid head saturates there
    (the sky, the far range)."""

    def __init__(self, session, every: int = 1, options: FitOptions = FitOptions(),
                 max_depth: Optional[float] = None, name: Optional[str] = None):
        unit = getattr(session, "unit", None) or session.config.unit
        if not unit.metric:
            raise ConfigError(f"the reference model {session.config.name} outputs {unit.name}, not metres; "
                              "metric_from needs a metric model (e.g. depth-anything-v2-metric-indoor-small)")
        self.session, self.unit, self.options = session, unit, options
        self.every = MetricFrom("reference", every).every
        cap = max_depth if max_depth is not None else float(getattr(session.config.dpt, "max_depth", 0.0))
        if not cap > 0:
            raise ConfigError(f"the reference model {session.config.name} declares no depth cap; give max_depth")
        self.max_depth = cap
        self.name = name or session.config.name

    def measure(self, image, shape: tuple[int, int], since_cut: int, index: int) -> Optional[Measurement]:
        if since_cut % self.every:
            return None
        values = np.asarray(self.session.step(image), dtype=np.float64)  # (H, W)
        metres = 1.0 / values if self.unit.inverse else values  # (H, W) metres
        valid = np.isfinite(metres) & (metres > 0) & (metres < self.options.far_fraction * self.max_depth)
        rows, cols = _grid(valid, self.options.max_points)
        return rows, cols, 1.0 / metres[rows, cols]

    def cut(self) -> None:
        self.session.reset()

    def reset(self) -> None:
        self.session.reset()

    def close(self) -> None:
        closer = getattr(self.session, "close", None)
        if closer is not None:
            closer()

    def describe(self) -> str:
        return (f"metres from {self.name} (cap {self.max_depth:g} m) run every {self.every} frame(s), "
                "scale and shift fitted in inverse depth")


class AnchorReference:
    """Sparse metric measurements per frame (:class:`flashdepth.metric.Anchors`), by the frame's
    index in the stream (counted from the stream's start; scene cuts do not restart it). Pixels are
    checked against the frames' size at the first frame."""

    def __init__(self, anchors: Anchors, max_depth: float = ANCHORS_MAX_DEPTH):
        if not max_depth > 0:
            raise OptionValueError("max_depth", max_depth, "give a positive distance in metres")
        self.anchors, self.max_depth = anchors, float(max_depth)
        self._checked: Optional[tuple[int, int]] = None

    def measure(self, image, shape: tuple[int, int], since_cut: int, index: int) -> Optional[Measurement]:
        if self._checked != tuple(shape):
            self.anchors.check_size(*shape)
            self._checked = tuple(shape)
        found = self.anchors.at(index)
        if found is None:
            return None
        rows, cols, metres = found
        return rows, cols, 1.0 / metres

    def cut(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def describe(self) -> str:
        return (f"metres from {len(self.anchors)} anchors in {len(self.anchors.frames)} frame(s) of "
                f"{Path(self.anchors.path).name}, scale and shift fitted in inverse depth")


def _unit_of(session) -> OutputUnit:
    return getattr(session, "unit", None) or session.config.unit


class AlignedSession:
    """A session whose depth is in metres: ``session`` (any stream, usually relative) aligned to
    ``reference`` (see the module). It offers what :class:`flashdepth.inference.session.DepthSession`
    offers a run (``step``, ``submit``/``flush``, ``run``, ``reset``, ``close``, ``config``,
    ``device``) and ``cut()``: a scene cut, which resets the stream's state and the fit (the next
    measurement replaces it; a metric model measures the very next frame).

    ``state`` is the current :class:`flashdepth.metric.FitState`; ``fits`` the (frame, scale, shift)
    of each frame since the last reset (a few numbers per frame, for plots and tests).
    """

    def __init__(self, session, reference: Reference, options: FitOptions = FitOptions()):
        self.session, self.reference, self.options = session, reference, options
        self.relative_unit = _unit_of(session)
        self.filter = FitFilter(options)
        self.fits: list[tuple[int, float, float]] = []
        self._pending: Optional[np.ndarray] = None
        self.reset_fit()

    # ------------------------------------------------------------------ the session's face
    @property
    def unit(self) -> OutputUnit:
        return UNITS["metric-depth"]

    @property
    def config(self):
        return self.session.config

    @property
    def device(self):
        return self.session.device

    def describe(self) -> str:
        return self.reference.describe()

    def reset_fit(self) -> None:
        """Forget the fit and the frame count (a new stream). Until the first measurement, frames
        get the provisional fit: today's approximate metres (100 / value) for a relative stream."""
        provisional = 1.0 / DEPTH_SCALE if (self.relative_unit.inverse and not self.relative_unit.metric) else 1.0
        self.state = FitState(provisional)
        self.frames = self.since_cut = 0
        self.fits = []

    def reset(self, size: Optional[tuple[int, int]] = None) -> None:
        """A new stream (the next frame is frame 0 of it)."""
        self._pending = None
        if size is None:
            self.session.reset()
        else:
            self.session.reset(size)
        self.reference.reset()
        self.reset_fit()

    def cut(self) -> None:
        """A scene cut within the stream: the model's state and the fit restart; frame indices go on."""
        self.session.reset()
        self.reference.cut()
        self.state = self.state.forget()
        self.since_cut = 0

    def close(self) -> None:
        for part in (self.session, self.reference):
            closer = getattr(part, "close", None)
            if closer is not None:
                closer()

    # ------------------------------------------------------------------ frames
    def align(self, image, values: np.ndarray) -> np.ndarray:
        """The stream's output ``values`` (H, W) for ``image`` -> metres (H, W) float32; measures
        when the reference has something for this frame, and moves the fit."""
        x = np.asarray(values, dtype=np.float64)  # (H, W) in the relative unit
        if not self.relative_unit.inverse:
            x = 1.0 / np.where(x > 0, x, np.nan)  # (H, W) 1/m: a metric stream is aligned in inverse depth too
        found = self.reference.measure(image, x.shape, self.since_cut, self.frames)
        if found is not None:
            rows, cols, y = found
            stride = max(1, int(math.sqrt(x.size / 16384)))
            fittable = relative_mask(x[::stride, ::stride], self.options.sky_fraction)  # the sky threshold, cheaply
            floor = x[::stride, ::stride][fittable].min() if fittable.any() else np.inf  # below: sky / far
            xs = x[rows, cols]  # (N,)
            keep = np.isfinite(xs) & (xs >= floor)
            self.state = self.filter.update(self.state, measurement_sums(xs[keep], y[keep], self.options))
        self.fits.append((self.frames, self.state.scale, self.state.shift))
        self.frames += 1
        self.since_cut += 1
        return to_metres(x, self.state, self.reference.max_depth)

    def step(self, frame) -> np.ndarray:
        """One frame -> depth (H, W) float32 in metres."""
        return self.align(frame, self.session.step(frame))

    def submit(self, frame) -> Optional[np.ndarray]:
        """As :meth:`DepthSession.submit`: the depth of the frame given before (None at first)."""
        done, self._pending = self._pending, self.step(frame)
        return done

    def flush(self) -> Optional[np.ndarray]:
        done, self._pending = self._pending, None
        return done

    @property
    def in_flight(self) -> bool:
        """Whether a frame given to :meth:`submit` awaits :meth:`flush` (as DepthSession's)."""
        return self._pending is not None

    def run(self, frames: Iterable) -> Iterator[np.ndarray]:
        for frame in frames:
            yield self.step(frame)
