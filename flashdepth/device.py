"""Devices and precisions: the one place that turns a user's choice into torch objects."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

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


def resolve_precision(precision: Optional[str], device: torch.device) -> str:
    """None -> bf16 on CUDA (as the published models run), fp32 elsewhere."""
    if precision is None:
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype_of(precision))


def dtype_of(precision: str) -> torch.dtype:
    return getattr(torch, PRECISIONS[precision])
