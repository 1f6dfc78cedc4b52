"""Frame preprocessing: processing size, resizing, normalisation, and resizing depth back.

Streaming, evaluation and training all feed the model through these functions, with the
numbers (patch size, mean, std, resolution policy) read from the model's config.

Processing size (:func:`processing_size`): a frame whose sides are multiples of the patch and
whose long side is within the cap is processed as it is, unless a resolution was asked for.
Otherwise, native resolution (``short_side=0``) caps the long side and rounds each side to a
multiple of the patch; ``short_side=N`` scales the short side to N (Depth Anything V2's
``keep_aspect_ratio`` / ``lower_bound`` rule). Rounding is to the nearest multiple, or up when
the nearest would fall below the target, as the official transforms do.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..config import InputConfig, ModelConfig
from ..device import interpolate_bicubic
from ..errors import InputShapeError


def _snap(x: float, minimum: float, multiple: int) -> int:
    y = int(round(x / multiple) * multiple)  # round half to even, as numpy in the official transform
    if y < minimum:
        y = int(math.ceil(x / multiple) * multiple)
    return max(y, multiple)


def processing_size(height: int, width: int, patch: int = 14, short_side: int = 0, cap: int = 2044,
                    explicit: bool = False) -> tuple[int, int]:
    """The (H, W) the model sees for an input of height x width.

    ``short_side`` 0 is native resolution (long side capped at ``cap``), N scales the short side
    to N. ``explicit`` (a user-given resolution) applies the rule even to frames that could be
    processed as they are.
    """
    if not explicit and height % patch == 0 and width % patch == 0 and max(height, width) <= cap:
        return height, width
    if short_side == 0:
        if max(height, width) > cap:
            scale = cap / max(height, width)
            height, width = int(height * scale), int(width * scale)
        return _snap(height, height, patch), _snap(width, width, patch)
    scale = max(short_side / height, short_side / width)
    return _snap(scale * height, short_side, patch), _snap(scale * width, short_side, patch)


def model_processing_size(config: ModelConfig, height: int, width: int,
                          resolution: Optional[int] = None) -> tuple[int, int]:
    """The processing size of ``config``'s model for a height x width frame; ``resolution``
    (a short side in pixels) overrides the model's own rule."""
    rule = config.input
    if resolution:
        return processing_size(height, width, config.vit.patch_size, int(resolution), rule.long_side_cap, explicit=True)
    if rule.max_aspect and rule.short_side:
        # Video Depth Anything's transform: applied to every frame (no "as it is" shortcut)
        return processing_size(height, width, config.vit.patch_size, aspect_short_side(rule, height, width,
                               config.vit.patch_size), rule.long_side_cap, explicit=True)
    return processing_size(height, width, config.vit.patch_size, rule.short_side, rule.long_side_cap)


def aspect_short_side(rule: InputConfig, height: int, width: int, patch: int = 14) -> int:
    """The short side of ``rule`` for a height x width frame: ``short_side``, or for frames more
    elongated than ``max_aspect`` the smaller one Video Depth Anything uses (its 16:9 memory rule)."""
    ratio = max(height, width) / min(height, width)
    if not rule.max_aspect or ratio <= rule.max_aspect:
        return rule.short_side
    return round(int(rule.short_side * rule.aspect_scale / ratio) / patch) * patch


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


def normalise(rgb: torch.Tensor, size: tuple[int, int], rule: InputConfig = InputConfig()) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> (1, 3, size): resized (bicubic, clipped) and normalised with
    the model's mean and std."""
    x = rgb[None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = interpolate_bicubic(x, size=size, align_corners=False)
        if rule.clip:
            x = x.clamp_(0.0, 1.0)
    mean, std = normalisation_tensors(tuple(rule.mean), tuple(rule.std), x.device, x.dtype)  # (1, 3, 1, 1) each
    return (x - mean) / std


@functools.lru_cache(maxsize=64)
def normalisation_tensors(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                          dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std as (1, 3, 1, 1) tensors on ``device``, made once per device and dtype
    (building them per frame is two blocking host-to-device copies on a GPU). Never modified."""
    with torch.inference_mode(False):  # ordinary tensors, usable in training graphs as well
        return (torch.tensor(mean, device=device, dtype=dtype).view(1, 3, 1, 1),
                torch.tensor(std, device=device, dtype=dtype).view(1, 3, 1, 1))


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) depth -> (..., H, W), bilinear with ``align_corners=True``.

    The one convention for bringing predictions back to the input's (or the ground truth's)
    size: the official evaluation code upsamples this way, so streaming outputs and scores agree.
    """
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    lead = depth.shape[:-2]
    x = depth.reshape(-1, 1, *depth.shape[-2:])
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
    return x.reshape(*lead, *size)
