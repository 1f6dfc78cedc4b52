"""Frame preprocessing: processing-resolution policy, resizing and ImageNet normalisation.

Policy (``processing_size``): a frame whose sides are multiples of 14 and whose long side is
within the cap (2044) is processed as it is, unless a resolution was asked for. Otherwise, ``"native"`` caps the long side at 2044
and rounds each side to a multiple of 14; an integer N scales the short side to N (Depth Anything
V2's ``keep_aspect_ratio`` / ``lower_bound`` rule). Rounding is to the nearest multiple of 14,
or up when the nearest would fall below the target, as the official transforms do.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F

from .errors import InputShapeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LONG_SIDE_CAP = 2044
PATCH = 14

Policy = Union[str, int]


def _snap(x: float, minimum: float, multiple: int = PATCH) -> int:
    y = int(round(x / multiple) * multiple)  # round half to even, as numpy in the official transform
    if y < minimum:
        y = int(math.ceil(x / multiple) * multiple)
    return max(y, multiple)


def processing_size(height: int, width: int, policy: Policy = "native", cap: int = LONG_SIDE_CAP,
                    explicit: bool = False) -> tuple[int, int]:
    """The (H, W) the model sees for an input of height x width under ``policy``.

    ``explicit`` (a user-given resolution) applies the policy even to frames that could be
    processed as they are.
    """
    if not explicit and height % PATCH == 0 and width % PATCH == 0 and max(height, width) <= cap:
        return height, width
    if policy == "native":
        if max(height, width) > cap:
            scale = cap / max(height, width)
            height, width = int(height * scale), int(width * scale)
        return _snap(height, height), _snap(width, width)
    short = int(policy)
    scale = max(short / height, short / width)
    return _snap(scale * height, short), _snap(scale * width, short)


def to_float_rgb(frame: torch.Tensor) -> torch.Tensor:
    """(H, W, C) uint8 / uint16 / float in [0, 1] -> (3, H, W) float32 in [0, 1].

    Grayscale (C=1 or a 2-D array) is repeated to RGB; an alpha channel is dropped.
    """
    if frame.dim() == 2:
        frame = frame[..., None]
    if frame.dim() != 3 or frame.shape[-1] not in (1, 3, 4):
        raise InputShapeError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {tuple(frame.shape)}")
    if frame.dtype == torch.uint8:
        x = frame.float() / 255.0
    elif frame.dtype in (torch.int32, torch.int64, torch.uint16):
        x = frame.float() / 65535.0
    elif frame.dtype.is_floating_point:
        x = frame.float()
    else:
        raise InputShapeError(f"unsupported image dtype {frame.dtype}; use uint8, uint16 or float in [0, 1]")
    x = x[..., :3] if x.shape[-1] >= 3 else x.expand(*x.shape[:2], 3)
    return x.permute(2, 0, 1)  # (3, H, W)


def normalise(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> (1, 3, size) resized (bicubic, clipped) and ImageNet-normalised."""
    x = rgb[None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
