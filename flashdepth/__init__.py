"""flashdepth: real-time streaming video depth estimation (FlashDepth, ICCV 2025) in pure PyTorch."""

from .config import DPTConfig, FusionConfig, ModelConfig, TemporalConfig, ViTConfig
from .errors import (CheckpointError, ConfigError, FlashDepthError, InputShapeError, StreamStateError,
                     UnknownModelError, WeightsNotFoundError)
from .models import FlashDepth, StreamState
from .registry import create_model, get_config, list_models
from .session import DepthSession
from .weights import load_model, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "ConfigError", "DepthSession", "DPTConfig", "FlashDepth", "FlashDepthError", "FusionConfig",
    "InputShapeError", "ModelConfig", "StreamState", "StreamStateError", "TemporalConfig", "UnknownModelError",
    "ViTConfig", "WeightsNotFoundError", "create_model", "get_config", "list_models", "load_model",
    "save_checkpoint",
]
