"""Devices and precisions: the one place that turns a user's choice into torch objects."""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch
import torch.nn.functional as F

from .config import PRECISIONS
from .errors import ConfigError, DeviceUnavailableError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: Optional[str | torch.device] = None) -> torch.device:
    """``"auto"`` / None -> CUDA if available, then MPS, else CPU; anything else must exist here."""
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(str(device), "no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(str(device), f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not _mps_available():
        raise DeviceUnavailableError(str(device), "MPS is not available")
    return dev


def bind_device(device: torch.device) -> None:
    """Make ``device`` the current CUDA device of the calling thread (nothing for other devices).

    Each thread starts on cuda:0: a thread that works on cuda:N without this opens a context on
    GPU 0 as well (about 0.5 GB) and its "current stream" is GPU 0's. Call it first in every
    worker thread or process that serves one device (the session's compute thread does).
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


@functools.lru_cache(maxsize=None)
def bicubic_supported(device_type: str, version: str = str(torch.__version__)) -> bool:
    """Whether ``F.interpolate(mode="bicubic")`` runs on this device type: MPS has it only from
    torch 2.6 (the package allows torch 2.4). Decided once per device type."""
    if device_type != "mps":
        return True
    major, minor = (int("".join(c for c in part if c.isdigit()) or 0) for part in version.split(".")[:2])
    return (major, minor) >= (2, 6)


def interpolate_bicubic(x: torch.Tensor, **kwargs) -> torch.Tensor:
    """Bicubic ``F.interpolate`` (``size`` or ``scale_factor``, ``align_corners``, ``antialias``);
    where the device has no bicubic kernel, on the CPU and back (same result, slower)."""
    if bicubic_supported(x.device.type):
        return F.interpolate(x, mode="bicubic", **kwargs)
    return F.interpolate(x.cpu(), mode="bicubic", **kwargs).to(x.device)


def resolve_precision(precision: Optional[str], device: torch.device) -> str:
    """None -> bf16 on CUDA (as the published models run), fp32 elsewhere."""
    if precision is None:
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (none for fp32 and tf32)."""
    if dtype_of(precision) == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype_of(precision))


def configure_float32(device: torch.device, precision: str) -> None:
    """Make float32 on CUDA mean what ``precision`` says: TF32 for matmuls and cuDNN convolutions
    only with ``tf32``, IEEE float32 otherwise (cuDNN defaults to TF32 on Ampere and newer, about
    1e-3 relative error). Called once where a session or benchmark is prepared, never per frame.

    torch's flags are process-wide: the last session prepared on CUDA decides for the process.
    Nothing is changed for other devices (TF32 exists only on CUDA).
    """
    if device.type != "cuda":
        return
    tf32 = precision == "tf32"
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9 (the allow_tf32 flags are deprecated there)
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        matmul.allow_tf32 = tf32
        cudnn.allow_tf32 = tf32


def cast_weights_for(model, precision: str, cast: Optional[bool] = None) -> None:
    """Cast a :class:`~flashdepth.FlashDepth`'s weights once for ``precision`` (bf16/fp16), or check
    that fp32/tf32 gets float32 weights.

    ``cast`` None casts frozen models only (none of their parameters requires gradients: a model
    being trained is left alone); True always (an error for a trainable model); False never.
    """
    if not hasattr(model, "cast_for_inference"):
        return  # a runner (exported graph, ...) holds its own weights
    dtype = dtype_of(precision)
    current = model.weights_dtype()
    if dtype == torch.float32:
        if current != torch.float32:
            raise ConfigError(f"precision={precision!r} needs float32 weights, but this model's were cast to {current} "
                              f"(by a session at that precision); load the model again for {precision}")
        return
    if cast is False or current == dtype:
        return
    if current != torch.float32:
        raise ConfigError(f"precision={precision!r} needs float32 or {dtype} weights, but this model's were cast to "
                          f"{current}; load the model again for {precision}")
    if cast is None and any(p.requires_grad for p in model.parameters()):
        return
    model.cast_for_inference(dtype)


def dtype_of(precision: str) -> torch.dtype:
    return getattr(torch, PRECISIONS[precision])
