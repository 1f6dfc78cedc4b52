"""A streaming depth session: owns one stream's state, takes frames, returns depth.

>>> session = DepthSession(flashdepth.load_model("flashdepth-s"), device="cuda")
>>> for depth in session.run(frames):   # numpy (H, W, 3) uint8 frames, or tensors
...     ...                              # depth: (H, W) float32 numpy, at the frame's size
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, InputShapeError, StreamStateError, UnknownModelError
from .preprocess import Policy, normalise, processing_size, to_float_rgb
from .registry import get_spec

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FrameLike = Union[np.ndarray, torch.Tensor]


def resolve_device(device: Optional[str] = None) -> torch.device:
    """``auto`` / None -> CUDA if available, then MPS, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu")
    return dev


class DepthSession:
    """One stream through a model. Not thread-safe; use one session per stream."""

    def __init__(self, model: torch.nn.Module, device: Optional[str] = None, precision: Optional[str] = None,
                 resolution: Optional[int] = None, size: Optional[tuple[int, int]] = None):
        """``resolution``: process at this short side; ``size``: process at exactly (H, W) (multiples
        of 14; evaluation presets). Neither: the model's policy (see :mod:`flashdepth.preprocess`)."""
        self.device = resolve_device(device)
        if precision is None:
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if precision != "fp32" and self.device.type == "cpu":
            raise ConfigError(f"--precision {precision} needs a GPU; use --precision fp32 on the CPU")
        self.precision = precision
        self.model = model.to(self.device).eval()
        name = model.config.name
        try:
            default_policy: Policy = get_spec(name).resolution
        except UnknownModelError:  # a custom architecture: native resolution
            default_policy = "native"
        self.fixed_size = tuple(size) if size else None
        self.explicit_resolution = bool(resolution)
        self.policy: Policy = int(resolution) if resolution else default_policy
        self.reset()

    def reset(self, size: Optional[tuple[int, int]] = None) -> None:
        """Start a new stream: the next frame may have any size. ``size`` (H, W) fixes the
        processing size of the new stream (e.g. an evaluation preset)."""
        if size is not None:
            self.fixed_size = tuple(size)
        self.state = None
        self.input_size: Optional[tuple[int, int]] = None
        self.frames = 0

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _as_tensor(self, frame: FrameLike) -> torch.Tensor:
        if isinstance(frame, np.ndarray):
            if frame.dtype == np.uint16:
                frame = frame.astype(np.int32)
            elif not frame.flags.writeable:
                frame = frame.copy()  # torch cannot wrap read-only arrays (e.g. from PIL)
            frame = torch.from_numpy(np.ascontiguousarray(frame))
        elif not isinstance(frame, torch.Tensor):
            raise InputShapeError(f"expected a numpy array or a torch tensor frame, got {type(frame).__name__}")
        if frame.dim() == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3, 4):
            frame = frame.permute(1, 2, 0)  # (C, H, W) tensors -> (H, W, C)
        return to_float_rgb(frame.to(self.device))

    @torch.inference_mode()
    def predict(self, frame: FrameLike) -> torch.Tensor:
        """One frame (H, W, 3) -> depth (h, w) float32 tensor at the processing size, on the device."""
        rgb = self._as_tensor(frame)  # (3, H, W) in [0, 1]
        h, w = rgb.shape[-2:]
        if self.input_size is None:
            self.input_size = (h, w)
            self.size = self.fixed_size or processing_size(h, w, self.policy, explicit=self.explicit_resolution)
            smallest = self.model.min_input_size()
            if min(self.size) < smallest:
                raise InputShapeError(f"frame size {h}x{w} is too small: {self.model.config.name} needs "
                                      f"frames of at least {smallest} pixels a side")
        elif (h, w) != self.input_size:
            raise StreamStateError(f"frame size changed from {self.input_size[0]}x{self.input_size[1]} to {h}x{w} "
                                   "mid-stream; call reset() to start a new stream at the new size")
        x = normalise(rgb, self.size)
        with self._autocast():
            depth, self.state = self.model(x, self.state)  # (1, h', w')
        self.frames += 1
        return depth[0].float()

    def step(self, frame: FrameLike) -> np.ndarray:
        """One frame (H, W, 3) -> depth (H, W) float32 numpy at the frame's size (inverse depth)."""
        depth = self.predict(frame)  # (h', w')
        h, w = self.input_size
        if tuple(depth.shape) != (h, w):
            depth = F.interpolate(depth[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return depth.cpu().numpy()

    def run(self, frames: Iterable[FrameLike]) -> Iterator[np.ndarray]:
        """Depth for each frame as it arrives (constant memory)."""
        for frame in frames:
            yield self.step(frame)
