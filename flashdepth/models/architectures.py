"""The table of architectures: which module a :class:`~flashdepth.config.ModelConfig` builds.

A row is chosen by what the config holds (its parts), never by the model's name, so a config
read from a checkpoint or an exported graph builds the same network as the registry row it came
from. The first row whose ``matches`` accepts the config builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from ..config import ModelConfig
from .flashdepth import FlashDepth
from .vda import VideoDepthAnything


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    matches: Callable[[ModelConfig], bool]
    build: Callable[[ModelConfig], nn.Module]


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("video-depth-anything", "Depth Anything V2 with motion modules (temporal attention) in the DPT; "
                 "config.motion set", lambda c: c.motion is not None, VideoDepthAnything),
    Architecture("flashdepth", "Depth Anything V2, with a Mamba temporal module (config.temporal) and a fused "
                 "teacher (config.fusion) where set", lambda c: True, FlashDepth),
)


def architecture_of(config: ModelConfig) -> Architecture:
    return next(a for a in ARCHITECTURES if a.matches(config))


def build_model(config: ModelConfig) -> nn.Module:
    """The module ``config`` describes, with freshly initialised weights."""
    return architecture_of(config).build(config)
