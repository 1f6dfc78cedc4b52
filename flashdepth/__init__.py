"""flashdepth: real-time streaming video depth estimation (FlashDepth, ICCV 2025) in pure PyTorch.

Configs, errors and the model table import without torch; the rest (models, loading, sessions)
is imported on first use, so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import DPTConfig, FusionConfig, InputConfig, ModelConfig, TemporalConfig, ViTConfig
from .errors import (CheckpointError, ConfigError, DeviceUnavailableError, FlashDepthError, FrameSizeChangedError,
                     InputError, InputShapeError, StreamStateError, UnknownModelError, UnknownNameError,
                     WeightsNotFoundError)
from .inference.registry import create_model, get_config, list_models

__version__ = "0.2.0"

_LAZY = {
    "FlashDepth": "flashdepth.models",
    "StreamState": "flashdepth.models",
    "DepthSession": "flashdepth.inference.session",
    "load_model": "flashdepth.inference.weights",
    "save_checkpoint": "flashdepth.inference.weights",
    "Intrinsics": "flashdepth.geometry",
    "metric_depth": "flashdepth.geometry",
    "unproject": "flashdepth.geometry",
    "LiveViewer": "flashdepth.viewer",
}

__all__ = [
    "CheckpointError", "ConfigError", "DepthSession", "DeviceUnavailableError", "DPTConfig", "FlashDepth",
    "FlashDepthError", "FrameSizeChangedError", "FusionConfig", "InputConfig", "InputError", "InputShapeError",
    "Intrinsics", "LiveViewer", "ModelConfig", "StreamState", "StreamStateError", "TemporalConfig",
    "UnknownModelError", "UnknownNameError", "ViTConfig", "WeightsNotFoundError", "create_model", "get_config",
    "list_models", "load_model", "metric_depth", "save_checkpoint", "unproject",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flashdepth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
