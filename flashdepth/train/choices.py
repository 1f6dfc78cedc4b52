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
    shift per frame that fits it to gt over the valid pixels, the scale taken positive: a
    prediction that runs opposite to the truth is compared as predicted, not flipped. (With the
    sign free, a model trained from scratch learned inverted inverse depth: correlation with the
    truth -0.54 on 16 held-out clips after 250 steps, docs/tiny-synthetic.md.)"""
    m = valid.float()  # (..., H, W)
    n = m.sum(dim=(-2, -1)).clamp_min(1.0)  # (...)
    sp, sg = (pred * m).sum((-2, -1)), (gt * m).sum((-2, -1))  # (...)
    spp, spg = (pred * pred * m).sum((-2, -1)), (pred * gt * m).sum((-2, -1))  # (...)
    det = (spp * n - sp * sp).clamp_min(1e-6)
    scale = ((spg * n - sp * sg) / det).abs()  # (...) its magnitude: an inverted frame is not rewarded
    shift = (sg - scale * sp) / n  # (...)
    return pred * scale[..., None, None] + shift[..., None, None]


def align_per_clip(pred, gt, valid):
    """pred, gt: (B, T, H, W); valid: (B, T, H, W) bool -> pred after one least-squares scale (taken
    positive) and shift per clip, fitted over all its frames at once: the evaluation protocol's
    alignment (one per sequence). The frames of a clip must then agree in scale with each other,
    which per-frame alignment forgives and which is what the recurrent state is for."""
    b, t, h, w = pred.shape
    fused = align_per_frame(pred.reshape(b, t * h, w), gt.reshape(b, t * h, w), valid.reshape(b, t * h, w))  # (B, T*H, W)
    return fused.reshape(b, t, h, w)


def mean_abs_error(pred, gt, valid):
    """pred, gt: (..., H, W); valid: (..., H, W) bool -> mean |pred - gt| over the valid pixels ()."""
    return (pred - gt).abs()[valid].mean()


#: weight of the scale term of ``l1-scale``: a 10 % global scale error (0.1 in log) costs as much as
#: a mean disparity error of 1 (x100 units, i.e. 0.01 / m)
SCALE_WEIGHT = 10.0
SCALE_FLOOR = 0.1  # x100 inverse depth: a prediction this small (1 km away) is taken as that far in the log


def frame_log_error(pred, gt, valid):
    """pred, gt: (..., H, W) x100 inverse depth -> (e, n, mean): e = log(pred / gt) on each valid
    non-sky pixel and 0 elsewhere (..., H, W), the number of such pixels per frame (...), and each
    frame's mean of e (...). Sky has no log; predictions below SCALE_FLOOR count as at it."""
    m = (valid & (gt > 0)).float()  # (..., H, W)
    e = (pred.clamp_min(SCALE_FLOOR).log() - gt.clamp_min(SCALE_FLOOR).log()) * m  # (..., H, W)
    n = m.sum((-2, -1))  # (...)
    return e, n, e.sum((-2, -1)) / n.clamp_min(1.0)


def mean_over_frames(per_frame, n, pred):
    """The mean of ``per_frame`` (...) over the frames with a non-sky pixel (n > 0); with none, a
    zero that keeps ``pred`` in the graph."""
    return per_frame[n > 0].mean() if (n > 0).any() else pred.sum() * 0.0


def l1_scale_loss(pred, gt, valid, weight: float = SCALE_WEIGHT):
    """``mean_abs_error`` plus ``weight`` x the mean over frames of |mean log(pred / gt)| over each
    frame's valid non-sky pixels: the frame's global scale error as a term of its own, which L1
    alone mixes with every pixel's structure error. pred, gt: (..., H, W) x100 inverse depth."""
    _, n, frame = frame_log_error(pred, gt, valid)
    return mean_abs_error(pred, gt, valid) + weight * mean_over_frames(frame.abs(), n, pred)


def log_inverse_loss(pred, gt, valid, lambd: float = 0.5):
    """Each frame's scale-invariant log error on inverse depth, sqrt(var(e) + (1 - lambd) mean(e)^2)
    with e = log pred - log gt over its valid non-sky pixels, averaged over frames, plus the mean
    |pred| on sky pixels (supervised towards 0 as in ``l1``). A ratio error counts the same near
    and far, as delta1 counts it, where ``l1`` weighs a pixel by its inverse depth; lambd < 1 keeps
    a share of the frame's global scale error. pred, gt: (..., H, W) x100 inverse depth."""
    e, n, mean = frame_log_error(pred, gt, valid)
    var = (e * e).sum((-2, -1)) / n.clamp_min(1.0) - mean * mean  # (...)
    per_frame = (var + (1.0 - lambd) * mean * mean).clamp_min(1e-12).sqrt()  # (...)
    structure = mean_over_frames(per_frame, n, pred)
    sky = valid & (gt == 0)
    return structure + (pred[sky].abs().mean() if sky.any() else pred.sum() * 0.0)


#: SILog's lambda in Depth Anything V2's metric training (``metric_depth/util/loss.py``)
SILOG_LAMBDA = 0.5
SILOG_FLOOR = 1e-6  # metres: a sigmoid head can underflow to 0, whose log would be -inf


def silog_loss(pred, gt, valid, lambd: float = SILOG_LAMBDA):
    """The scale-invariant log loss of Depth Anything V2's metric models, on depths in metres:
    sqrt(mean(e^2) - lambd * mean(e)^2) with e = ln gt - ln pred over the valid pixels of the whole
    batch (pooled, as the official loss pools its batch). lambd = 1 would ignore a global scale
    error entirely; 0.5 penalises half of it, which is what teaches metres."""
    e = gt[valid].log() - pred[valid].clamp_min(SILOG_FLOOR).log()  # (n,)
    # >= (1 - lambd) mean(e^2) >= 0 in exact arithmetic; the floor keeps sqrt's gradient finite at 0
    return ((e * e).mean() - lambd * e.mean() ** 2).clamp_min(1e-12).sqrt()


TARGET_SCALE = 100.0  # ground truth inverse depth (1/m) x 100: the published models' units
MIN_DEPTH = 1e-3  # metres: nearer ground truth is not supervised in metres (Depth Anything V2's min_depth)


def inverse_target(target, max_depth: float):
    """Training target (inverse depth in 1/m, -1 invalid, 0 sky) -> (100 x inverse depth, valid):
    the published models' units, sky included (supervised towards 0)."""
    return target * TARGET_SCALE, target >= 0


def metric_target(target, max_depth: float):
    """Training target -> (depth in metres, valid): the pixels with a depth in [MIN_DEPTH,
    max_depth] (the head's cap: a sigmoid head cannot reach beyond it), so no sky and nothing
    invalid (Depth Anything V2's metric training mask)."""
    valid = (target > 0) & (target >= 1.0 / max_depth) & (target <= 1.0 / MIN_DEPTH)  # (..., H, W)
    return 1.0 / target.where(valid, 1.0), valid  # (..., H, W): 1 m where not valid (never read)


#: what a loss compares the prediction with, per output unit (a row of flashdepth.config.UNITS)
TARGETS = {"relative-inverse-depth": inverse_target, "metric-depth": metric_target}


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    align: Optional[Callable] = None  # (pred, gt, valid) -> pred aligned to gt; None: compared as predicted
    unit: str = "relative-inverse-depth"  # the output unit (flashdepth.config.UNITS) it trains: picks the target
    reduce: Callable = mean_abs_error  # (pred, gt, valid) -> the loss ()


LOSSES = {
    "l1": Loss("l1", "mean |pred - 100 x inverse depth| over valid pixels, sky supervised towards 0"),
    "ssi": Loss("ssi", "the same after a per-frame least-squares scale (taken positive) and shift of the prediction "
                       "(scale-and-shift invariant)", align_per_frame),
    "ssi-clip": Loss("ssi-clip", "the same after one least-squares scale (taken positive) and shift per clip, over "
                                 "all its frames (the evaluation protocol's alignment): scale-invariant, but the "
                                 "frames of a clip must agree in scale", align_per_clip),
    "l1-scale": Loss("l1-scale", f"l1 plus {SCALE_WEIGHT:g} x each frame's |mean log(pred / target)| over its "
                                 "non-sky pixels: the global scale error as a term of its own (a step-1 option)",
                     reduce=l1_scale_loss),
    "log": Loss("log", "per frame, the scale-invariant log error of inverse depth over non-sky pixels with half its "
                       "global scale error kept (lambda 0.5), plus mean |pred| on sky: ratio errors weigh the same "
                       "near and far", reduce=log_inverse_loss),
    "silog": Loss("silog", f"scale-invariant log loss on depth in metres, lambda {SILOG_LAMBDA} (Depth Anything V2's "
                           "metric training), over pixels within the metric head's cap; needs a metric head",
                  unit="metric-depth", reduce=silog_loss),
}


def check_loss_unit(kind: str, config) -> None:
    """A ConfigError unless the loss row ``kind`` trains what a model of ``config`` (a ModelConfig)
    outputs: ``silog`` needs a metric head, ``l1`` and ``ssi`` a relative one."""
    row = choose(LOSSES, kind, "loss")
    unit = config.unit.name
    if row.unit != unit:
        fits = ", ".join(name for name, other in LOSSES.items() if other.unit == unit)
        fix = ("give the model a metric head (metric_head=MAX_DEPTH in metres, e.g. 80)" if row.unit == "metric-depth"
               else f"use one of the losses for {unit}: {fits}")
        raise ConfigError(f"loss={kind!r} trains {row.unit} but {config.name} outputs {unit}; {fix}")


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
