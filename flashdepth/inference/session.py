"""A streaming depth session: owns one stream's state, takes frames, returns depth.

>>> session = DepthSession(flashdepth.load_model("flashdepth-s"), device="cuda")
>>> for depth in session.run(frames):   # numpy (H, W, 3) uint8 frames, or tensors
...     ...                              # depth: (H, W) float32 numpy, at the frame's size
"""

from __future__ import annotations

import concurrent.futures

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch

from ..device import autocast, bind_device, cast_weights_for, configure_float32, resolve_device, resolve_precision
from ..errors import FrameSizeChangedError, InputShapeError, InputValueError, NonFiniteOutputError, StreamStateError
from .preprocess import model_processing_size, normalise, resize_depth, to_float_rgb

FrameLike = Union[np.ndarray, torch.Tensor]

#: a float frame whose largest value is above this is refused: it is a [0, 255] frame, not [0, 1]
#: (the margin lets through the small overshoot of a user's own resampling)
FLOAT_PIXEL_LIMIT = 1.5


class PinnedStaging:
    """Host-to-GPU copies through one reused pinned buffer, asynchronous on the device's stream.

    The copy of frame t overlaps whatever the GPU is still doing; before the buffer is refilled
    with frame t+1 the host waits only for copy t (an event recorded on the current stream of the
    copy's own device, not device 0's), never for the whole device.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.buffer: Optional[torch.Tensor] = None
        self.copied: Optional[torch.cuda.Event] = None

    def to_device(self, frame: torch.Tensor) -> torch.Tensor:
        if frame.device.type != "cpu":
            return frame.to(self.device)
        if self.buffer is None or self.buffer.shape != frame.shape or self.buffer.dtype != frame.dtype:
            if self.copied is not None:
                self.copied.synchronize()  # the old buffer may still be read by its copy
            self.buffer = torch.empty(frame.shape, dtype=frame.dtype, pin_memory=True)
        elif self.copied is not None:
            self.copied.synchronize()  # the previous frame has left the buffer
        self.buffer.copy_(frame)
        out = self._upload(self.buffer)
        # The copy was queued on the target device's current stream: the event goes there too.
        self.copied = torch.cuda.Event()
        self.copied.record(torch.cuda.current_stream(self.device))
        return out

    def _upload(self, buffer: torch.Tensor) -> torch.Tensor:
        return buffer.to(self.device, non_blocking=True)


class DepthSession:
    """One stream through a model. Not thread-safe (call it from one thread); one session per stream.

    The model is anything called as ``depth, state = model(frame, state)`` with a ``config``
    (:class:`flashdepth.FlashDepth`, a compiled one, or an exported graph's runner).
    """

    def __init__(self, model, device: Optional[str] = None, precision: Optional[str] = None,
                 resolution: Optional[int] = None, size: Optional[tuple[int, int]] = None,
                 cast_weights: Optional[bool] = None):
        """``device``: auto (default), cpu, cuda, cuda:N, mps. ``precision``: fp32 (IEEE), tf32
        (fp32 with TF32 on CUDA), bf16, fp16 (autocast; default bf16 on CUDA, fp32 elsewhere).
        ``resolution``: process at this short side; ``size``: process at exactly (H, W) (multiples
        of the patch; evaluation presets). Neither: the model's own rule (``model.config.input``).

        The model is moved to the device in place and, for bf16/fp16, its linear and convolution
        weights are cast once in place (``cast_weights``: None casts frozen models only -- as
        :func:`flashdepth.load_model` returns them -- True always, False never; see
        :meth:`FlashDepth.cast_for_inference`). The TF32 flags of CUDA are set here, once."""
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        configure_float32(self.device, self.precision)
        self.model = model.to(self.device).eval() if isinstance(model, torch.nn.Module) else model
        cast_weights_for(self.model, self.precision, cast_weights)
        self.config = model.config
        self.resolution = int(resolution) if resolution else None
        self.fixed_size: Optional[tuple[int, int]] = tuple(size) if size else None
        self.state = None
        self.input_size: Optional[tuple[int, int]] = None  # (H, W) of the stream's frames
        self.size: Optional[tuple[int, int]] = None  # (H, W) the model sees
        self.frames = 0
        self.staging = PinnedStaging(self.device) if self.device.type == "cuda" else None
        self._pending: Optional[concurrent.futures.Future] = None  # the frame in flight (submit)
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    @property
    def unit(self):
        """What :meth:`step` returns (a row of :data:`flashdepth.config.UNITS`): the model's unit."""
        return self.config.unit

    def reset(self, size: Optional[tuple[int, int]] = None) -> None:
        """Start a new stream: the next frame may have any size. ``size`` (H, W) fixes the
        processing size of the new stream (e.g. an evaluation preset). A frame still in flight
        (:meth:`submit`) is waited for and dropped: :meth:`flush` first to keep its depth."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            concurrent.futures.wait([pending])
        if size is not None:
            self.fixed_size = tuple(size)
        self.state = None
        self.input_size = None
        self.size = None
        self.frames = 0

    def close(self) -> None:
        """Stop the compute thread of :meth:`submit` (a frame in flight is waited for first)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _as_tensor(self, frame: FrameLike) -> torch.Tensor:
        """A frame -> (3, H, W) float32 in [0, 1] on the device, after the checks of its values.

        Float frames are checked where they are (on the host for numpy and CPU tensors): a frame
        with NaN/Inf pixels, or with values above 1.5 (a [0, 255] frame given as float), is
        refused before the model runs, so the stream state stays as it was.
        """
        if isinstance(frame, np.ndarray):
            if frame.dtype == np.uint16:
                frame = frame.astype(np.int32)
            elif frame.dtype == np.float64:
                frame = frame.astype(np.float32)  # on the host: MPS has no float64, and half the bytes cross
            elif not frame.flags.writeable:
                frame = frame.copy()  # torch cannot wrap read-only arrays (e.g. from PIL)
            frame = torch.from_numpy(np.ascontiguousarray(frame))
        elif not isinstance(frame, torch.Tensor):
            raise InputValueError(f"expected a numpy array or a torch tensor frame, got {type(frame).__name__}")
        elif frame.dtype == torch.float64:
            frame = frame.float()
        if frame.dim() == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3, 4):
            frame = frame.permute(1, 2, 0)  # (C, H, W) tensors -> (H, W, C)
        if frame.numel() == 0:
            raise InputShapeError(f"frame {self._index()} is empty (shape {tuple(frame.shape)}); pass an (H, W, 3) image")
        if frame.dtype.is_floating_point:
            self._check_pixels(frame)
        # Raw pixels (uint8: 4x smaller than float) cross to the GPU through pinned memory,
        # asynchronously; conversion and resizing then run on the device.
        return to_float_rgb(self.staging.to_device(frame) if self.staging is not None else frame.to(self.device))

    def _check_pixels(self, frame: torch.Tensor) -> None:
        """Refuse non-finite and [0, 255] float frames (host-side for host frames; a frame already
        on a GPU costs one synchronisation)."""
        finite = torch.isfinite(frame)  # (H, W, C)
        if not bool(finite.all()):
            raise InputValueError(
                f"frame {self._index()} holds {int((~finite).sum())} non-finite pixel value(s) (NaN/Inf); it was "
                "refused and the stream state is unchanged: replace them (e.g. numpy.nan_to_num) or skip the frame")
        top = float(frame.amax())
        if top > FLOAT_PIXEL_LIMIT:
            raise InputValueError(
                f"frame {self._index()} is a float image with values up to {top:g}, but float frames must lie in "
                "[0, 1]; divide it by 255 (or pass the uint8 pixels as they are)")

    def _start(self, h: int, w: int) -> None:
        size = self.fixed_size or model_processing_size(self.config, h, w, self.resolution)
        smallest = self.model.min_input_size()
        if min(size) < smallest:
            raise InputShapeError(f"frame size {h}x{w} is too small: {self.config.name} needs "
                                  f"frames of at least {smallest} pixels a side")
        self.input_size, self.size = (h, w), size

    def _index(self) -> int:
        """The stream index of the next frame given: the frames done, and the one in flight."""
        return self.frames + (self._pending is not None)

    def _prepare(self, frame: FrameLike) -> torch.Tensor:
        """A frame -> (1, 3, h', w') normalised at the processing size, on the device."""
        rgb = self._as_tensor(frame)  # (3, H, W) in [0, 1]
        h, w = rgb.shape[-2:]
        if self.input_size is None:
            self._start(h, w)
        elif (h, w) != self.input_size:
            raise FrameSizeChangedError(self._index(), (h, w), self.input_size)
        return normalise(rgb, self.size, self.config.input)  # (1, 3, h', w')

    def _forward(self, x: torch.Tensor, state) -> tuple[torch.Tensor, object, torch.Tensor]:
        """The model on one prepared frame -> depth (h', w') float32, the new state, and whether
        both are finite (a 0-dim bool tensor on the device: read later, with the depth)."""
        with autocast(self.device, self.precision):
            depth, state = self.model(x, state)  # (1, h', w')
        depth = depth[0].float()
        finite = torch.isfinite(depth).all()
        for s in getattr(state, "ssm", ()):
            finite = finite & torch.isfinite(s).all()
        return depth, state, finite

    def _commit(self, state, finite: torch.Tensor) -> None:
        """Take the new state only if it and the depth are finite; otherwise keep the old one."""
        if not bool(finite):
            raise NonFiniteOutputError(self.frames)
        self.state = state
        self.frames += 1

    def _readout(self, x: torch.Tensor, state, size: tuple[int, int]) -> tuple[np.ndarray, object, torch.Tensor]:
        """Forward, then the depth at the frame's size (H, W) as numpy: the one wait for the device."""
        with torch.inference_mode():
            depth, state, finite = self._forward(x, state)
            return resize_depth(depth, size).cpu().numpy(), state, finite

    @property
    def in_flight(self) -> bool:
        """Whether a frame given to :meth:`submit` awaits :meth:`flush` (or the next ``submit``)."""
        return self._pending is not None

    def _require_idle(self, what: str) -> None:
        if self._pending is not None:
            raise StreamStateError(f"{what}() was called while a frame given to submit() is in flight; "
                                   "call flush() first to get its depth")

    @torch.inference_mode()
    def predict(self, frame: FrameLike) -> torch.Tensor:
        """One frame (H, W, 3) -> depth (h, w) float32 tensor at the processing size, on the device.

        A frame the session refuses (non-finite pixels, ...) or a non-finite result
        (:class:`~flashdepth.errors.NonFiniteOutputError`) leaves the stream state as it was.
        """
        self._require_idle("predict")
        depth, state, finite = self._forward(self._prepare(frame), self.state)
        self._commit(state, finite)
        return depth

    def step(self, frame: FrameLike) -> np.ndarray:
        """One frame (H, W, 3) -> depth (H, W) float32 numpy at the frame's size (inverse depth),
        synchronously (:meth:`submit` keeps one frame in flight instead)."""
        self._require_idle("step")
        with torch.inference_mode():
            x = self._prepare(frame)  # (1, 3, h', w')
        depth, state, finite = self._readout(x, self.state, self.input_size)
        self._commit(state, finite)
        return depth

    def submit(self, frame: FrameLike) -> Optional[np.ndarray]:
        """Start ``frame`` and return the depth of the frame given before it (None for the first).

        One frame is in flight: it computes on the session's compute thread (on a GPU, its
        kernels run) while the caller decodes the next frame and writes the previous depth. The
        outputs are those of :meth:`step`, in the same order, one call later; :meth:`flush`
        returns the last. Errors of the frame in flight (e.g. NonFiniteOutputError) are raised
        by the next ``submit``/``flush``, before anything else starts.
        """
        with torch.inference_mode():
            x = self._prepare(frame)  # checks and host-to-device copy while the previous frame computes
        done = self.flush()
        self._pending = self._compute_thread().submit(self._readout, x, self.state, self.input_size)
        return done

    def flush(self) -> Optional[np.ndarray]:
        """Wait for the frame in flight and return its depth (H, W); None if there is none."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        depth, state, finite = pending.result()
        self._commit(state, finite)
        return depth

    def _compute_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            # One thread: frames run in order, each with the state its predecessor committed.
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="flashdepth-compute", initializer=bind_device,
                initargs=(self.device,))
        return self._executor

    def run(self, frames: Iterable[FrameLike]) -> Iterator[np.ndarray]:
        """Depth for each frame, in order (constant memory), with one frame in flight: frame t+1
        is read from ``frames`` and computes while the depth of frame t is handed out."""
        self._require_idle("run")
        for frame in frames:
            done = self.submit(frame)
            if done is not None:
                yield done
        last = self.flush()
        if last is not None:
            yield last


@dataclass(frozen=True)
class SessionSpec:
    """Which weights, where and how: everything needed to open a :class:`DepthSession`.

    ``flashdepth run`` opens one; ``flashdepth batch`` sends this (it pickles) to every worker,
    which opens its own, so both load and run the model the same way.

    A ``checkpoint`` ending in ``.onnx`` is a graph written by :func:`flashdepth.export.export_onnx`:
    it holds its model and its frame size, so ``resolution`` must be left unset, ``model`` unset or
    the graph's own variant, and ``backend`` unset (the first graph runtime, ``onnxruntime``) or a
    backend that runs graph files (:func:`flashdepth.inference.backends.graph_file_backends`); anything else is
    a :class:`~flashdepth.errors.GraphOptionError` instead of being ignored.
    """

    model: Optional[str] = None  # a registered name; the variant to build from ``checkpoint``
    checkpoint: Optional[str] = None  # a weights file (default: the published weights of ``model``)
    device: Optional[str] = None
    precision: Optional[str] = None
    resolution: Optional[int] = None
    backend: Optional[str] = None  # a row of flashdepth.inference.backends.BACKENDS (None: torch; for a graph file, its runtime)
    # Metres from a relative stream (flashdepth.metric, docs/metric.md), one or the other:
    metric_from: Optional[str] = None  # "MODEL[:EVERY]": a metric model (name or checkpoint) run every EVERY frames
    anchors: Optional[str] = None  # a .csv/.npz file of frame,u,v,depth (metres) rows

    def __post_init__(self):
        from ..metric import MetricFrom

        if self.metric_from is not None and self.anchors is not None:
            from ..errors import ConfigError

            raise ConfigError(f"metric_from={self.metric_from!r} and anchors={self.anchors!r}: a stream takes its "
                              "metres from one of them; leave the other unset")
        if self.metric_from is not None:
            MetricFrom.parse(self.metric_from)  # a malformed spec fails here, before any weights load

    @property
    def weights(self) -> str:
        """What :func:`flashdepth.load_model` is given: the file, else the name (FlashDepth by default)."""
        return self.checkpoint or self.model or "flashdepth"

    @property
    def is_graph(self) -> bool:
        """Whether ``checkpoint`` is an exported graph (a ``.onnx`` file) rather than weights."""
        return bool(self.checkpoint) and str(self.checkpoint).endswith(".onnx")

    def open(self, device: Optional[str] = None, frame_size: Optional[tuple[int, int]] = None) -> DepthSession:
        """Load the model and open a session on ``device`` (default: this spec's device).

        ``frame_size``: (H, W) of the stream's frames, when known before the first frame. A backend
        whose runner prepares per size (``prepare(batch, h, w)``: the graph backends export and load
        their graph) does it now, so the first frame costs what the others do and a progress display
        or a timing started after ``open`` does not count the export as a frame."""
        from .backends import get_backend

        device = device or self.device
        if self.is_graph:
            return self._aligned(self._open_graph(device), device)
        from .weights import load_model

        backend = get_backend(self.backend or "torch")  # an unknown name or a missing extra fails before loading
        model = load_model(self.weights, variant=self.model)
        session = DepthSession(model, device=device, precision=self.precision, resolution=self.resolution)
        session.model = backend.create(session.model, session.device)  # torch: the model as placed
        prepare = getattr(session.model, "prepare", None)
        if frame_size is not None and prepare is not None:
            prepare(1, *model_processing_size(model.config, *frame_size, self.resolution))
        return self._aligned(session, device)

    def _aligned(self, session: DepthSession, device: Optional[str]):
        """``session`` in metres when ``metric_from`` or ``anchors`` asks for it (a
        :class:`flashdepth.metric.AlignedSession`), else as it is."""
        from ..metric import AlignedSession, AnchorReference, MetricFrom, MetricModelReference, read_anchors

        if self.anchors is not None:
            return AlignedSession(session, AnchorReference(read_anchors(self.anchors)))
        if self.metric_from is None:
            return session
        spec = MetricFrom.parse(self.metric_from)
        path = spec.model if (spec.model.endswith((".pth", ".pt", ".safetensors")) or "/" in spec.model) else None
        reference = SessionSpec(model=None if path else spec.model, checkpoint=path, device=device,
                                precision=self.precision).open(device)
        return AlignedSession(session, MetricModelReference(reference, spec.every, name=spec.model))

    def _open_graph(self, device: Optional[str]) -> DepthSession:
        from .backends import BACKENDS, graph_file_backends
        from ..errors import GraphOptionError, UnknownNameError
        from ..export import OnnxRunner, read_metadata

        path = str(self.checkpoint)
        runners = graph_file_backends()
        name = self.backend or runners[0]
        if name not in BACKENDS:
            raise UnknownNameError("backend", name, list(BACKENDS))
        if name not in runners:
            raise GraphOptionError("backend", name, f"cannot run the graph file {path}; the backends that run graph "
                                   f"files are: {', '.join(runners)}")
        graph = read_metadata(path)  # GraphFileError if it is not one of ours
        h, w = graph.size
        if self.resolution is not None:
            raise GraphOptionError("resolution", self.resolution, f"does not apply to the graph file {path}: it takes "
                                   f"frames at its exported size {h}x{w}; leave it unset, or export a graph at "
                                   "the size wanted")
        if self.model is not None and self.model != graph.config.name:
            raise GraphOptionError("model", self.model, f"does not match the graph file {path}, which holds "
                                   f"{graph.config.name}; leave it unset, or give a graph of {self.model}")
        runner = OnnxRunner(BACKENDS[name].runtime, resolve_device(device), graph=graph)
        return DepthSession(runner, device=device, precision=self.precision, size=graph.size)
