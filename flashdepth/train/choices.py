"""The training choices, one table each: ``loss``, ``data.crop``, ``optim.schedule`` and
``precision``. A row holds what the choice does, so the config check (:meth:`TrainConfig.validate`)
and the code that acts on it (the loss, the clip dataset, the schedule, the loop) read the same
row and cannot disagree; a new row is a new choice everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, TypeVar

import numpy as np

from ..errors import ConfigError

Row = TypeVar("Row")


def choose(table: Mapping[str, Row], name: str, key: str) -> Row:
    """The row ``name`` of ``table``; else a ConfigError naming ``key`` and the valid names."""
    if name not in table:
        raise ConfigError(f"{key}={name!r} is not one of the choices: "
                          + "; ".join(f"{n} ({row.description})" for n, row in table.items()))
    return table[name]


# ------------------------------------------------------------------------------------ loss
def align_per_frame(pred, gt, valid):
    """pred, gt: (..., H, W); valid: (..., H, W) bool -> pred after the least-squares scale and
    shift per frame that fits it to gt over the valid pixels."""
    m = valid.float()  # (..., H, W)
    n = m.sum(dim=(-2, -1)).clamp_min(1.0)  # (...)
    sp, sg = (pred * m).sum((-2, -1)), (gt * m).sum((-2, -1))  # (...)
    spp, spg = (pred * pred * m).sum((-2, -1)), (pred * gt * m).sum((-2, -1))  # (...)
    det = (spp * n - sp * sp).clamp_min(1e-6)
    scale = (spg * n - sp * sg) / det  # (...)
    shift = (sg - scale * sp) / n  # (...)
    return pred * scale[..., None, None] + shift[..., None, None]


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    align: Optional[Callable] = None  # (pred, gt, valid) -> pred aligned to gt; None: compared as predicted


LOSSES = {
    "l1": Loss("l1", "mean |pred - 100 x inverse depth| over valid pixels, sky supervised towards 0"),
    "ssi": Loss("ssi", "the same after a per-frame least-squares scale and shift of the prediction (scale-and-shift "
                       "invariant)", align_per_frame),
}


# ------------------------------------------------------------------------------------ crop
def _cover(h: int, w: int, th: int, tw: int, upscale_only: bool) -> tuple[int, int]:
    """The size a (h, w) frame is resized to before a (th, tw) crop: the smallest that covers it
    (or, ``upscale_only``, the frame's own size when it already covers it)."""
    scale = max(th / h, tw / w)
    if upscale_only:
        scale = max(scale, 1.0)
    return (int(h * scale), int(w * scale)) if scale != 1.0 else (h, w)


def _centre(h, w, th, tw, rng):
    size = _cover(h, w, th, tw, upscale_only=False)
    return size, ((size[0] - th) // 2, (size[1] - tw) // 2)


def _random(h, w, th, tw, rng):
    size = _cover(h, w, th, tw, upscale_only=True)
    y0 = int(rng.integers(0, size[0] - th + 1))
    x0 = int(rng.integers(0, size[1] - tw + 1))
    return size, (y0, x0)


@dataclass(frozen=True)
class Crop:
    name: str
    description: str
    place: Callable[[int, int, int, int, np.random.Generator], tuple[tuple[int, int], tuple[int, int]]]
    # place(h, w, th, tw, rng) -> (the size the frames are resized to, the crop's top-left (y0, x0))


CROPS = {
    "center": Crop("center", "resize to cover the crop, then the centre crop (stage 1)", _centre),
    "random": Crop("random", "upscale only when smaller than the crop, then one random crop per clip (stage 2)",
                   _random),
}


# -------------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    name: str
    description: str
    after_warmup: Callable[[float], float]  # progress in [0, 1] from the end of warm-up to the last step -> lr factor


SCHEDULES = {
    "constant": Schedule("constant", "the full rate after warm-up (as published)", lambda progress: 1.0),
    "cosine": Schedule("cosine", "a half cosine from the full rate down to 0 at the last step",
                       lambda progress: 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))),
}


# ------------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    name: str  # a precision of flashdepth.device (its autocast and dtype)
    description: str
    loss_scaling: bool  # fp16 gradients underflow without a gradient scaler


PRECISIONS = {
    "bf16": Precision("bf16", "bfloat16 autocast on CUDA and MPS (as published)", False),
    "fp16": Precision("fp16", "float16 autocast with a gradient scaler, on CUDA and MPS", True),
    "fp32": Precision("fp32", "no autocast", False),
}
