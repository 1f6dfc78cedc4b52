"""Model construction for training, parameter groups and the learning-rate schedule."""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..models import FlashDepth
from ..inference.weights import check_fit, detect_variant, model_from_checkpoint, read_checkpoint
from .choices import SCHEDULES, TARGET_SCALE, choose
from .config import TrainConfig

#: the depths, as fractions of the cap, over which a metric head taken from a relative one is fitted
METRIC_HEAD_FIT = (0.05, 0.9)


def build_model(config: TrainConfig) -> FlashDepth:
    """The model to train, initialised as the recipe says.

    Stage 1: ``init`` is a Depth Anything V2 (or FlashDepth) checkpoint; the temporal module
    starts at its published zero initialisation. Stage 2: ``init_student`` (FlashDepth-S) fills
    the student and its temporal module, ``init_teacher`` (FlashDepth-L) the teacher branch; the
    fusion starts at its zero initialisation. With ``metric_head`` > 0 the model has a metric head;
    weights from a relative model then enter it through :func:`metric_head_from_relative`.
    """
    model_config = config.model_to_train()
    if config.init_student or config.init_teacher:
        if model_config.fusion is None:
            raise ConfigError("init_student / init_teacher need a model with fusion (flashdepth)")
        model = FlashDepth(model_config)
        own = model.state_dict()
        merged = {}
        if config.init_student:
            student, _ = read_checkpoint(config.init_student)
            merged.update({k: v for k, v in student.items() if k in own and not k.startswith("teacher_model.")})
        if config.init_teacher:
            teacher, _ = read_checkpoint(config.init_teacher)
            merged.update({f"teacher_model.{k}": v for k, v in teacher.items() if f"teacher_model.{k}" in own})
        missing_ok = ("hybrid_fusion.",)
        if not config.init_student:
            missing_ok += ("pretrained.", "mamba.", "depth_head.")
        if not config.init_teacher:
            missing_ok += ("teacher_model.",)
        check_fit(model, merged, "stage-2 initialisation", allow_missing_prefixes=missing_ok)
        model.load_state_dict(merged, strict=False)
        head_from = config.init_student
    elif config.init:
        model = model_from_checkpoint(config.init, model_config)
        head_from = config.init
    else:
        return FlashDepth(model_config)
    if model_config.unit.metric and head_from and not checkpoint_unit(head_from).metric:
        metric_head_from_relative(model)
    return model


def checkpoint_unit(path: str):
    """The output unit (a row of :data:`flashdepth.config.UNITS`) of the model a checkpoint holds:
    ours store their config; a published file is matched by its layout, and one that matches
    nothing, or the Depth Anything V2 metric files (which have exactly the relative models' layout),
    reads as relative."""
    from ..config import UNITS

    state, meta = read_checkpoint(path)
    try:
        return detect_variant(state, meta).unit
    except CheckpointError:
        return UNITS["relative-inverse-depth"]


def metric_head_fit(max_depth: float, scale: float = TARGET_SCALE, fit: tuple[float, float] = METRIC_HEAD_FIT,
                    samples: int = 256) -> tuple[float, float]:
    """(c, alpha) such that ``max_depth * sigmoid(c - alpha * r)`` is close to the depth ``scale / r``
    that a relative output r means (the published x100 convention): the least-squares line of
    logit(z / max_depth) against -scale / z over depths z log-spaced in ``fit`` (fractions of
    the cap). A sigmoid of a line in 1/z cannot follow 1/z over decades: the start is a monotone,
    roughly calibrated reading of the relative output (about 0.3 in |ln| error), not an exact one."""
    z = np.geomspace(fit[0] * max_depth, fit[1] * max_depth, samples)  # (n,) metres
    design = np.stack([np.ones_like(z), -scale / z], axis=1)  # (n, 2)
    (c, alpha), *_ = np.linalg.lstsq(design, np.log(z / (max_depth - z)), rcond=None)
    return float(c), float(alpha)


@torch.no_grad()
def metric_head_from_relative(model: FlashDepth) -> FlashDepth:
    """Give a metric head the meaning of the relative head whose weights it holds, in place.

    The last layer (``output_conv2``'s 1x1 convolution) of a relative head computes r, read as
    inverse depth x100 after the ReLU; in a metric head the same layer computes the logit of depth
    / max_depth. Everything before that layer keeps its weights; the layer becomes
    ``c - alpha * r`` (weights times -alpha, bias times -alpha plus c; :func:`metric_head_fit`), so
    the fine-tune starts from depths that fall as the relative output rises, near 100 / r, instead
    of a saturated sigmoid (a relative output of tens would pin it at the cap, with no gradient).
    """
    cap = model.config.dpt.max_depth
    if not cap > 0:
        raise ConfigError(f"{model.config.name} has a relative head (dpt.max_depth=0); build it with "
                          "config.with_metric_head(MAX_DEPTH) first")
    c, alpha = metric_head_fit(cap)
    last = model.depth_head.scratch.output_conv2[2]
    last.weight.mul_(-alpha)
    last.bias.mul_(-alpha).add_(c)
    return model


def frozen_by_design(model: FlashDepth) -> list[str]:
    """Parameters the forward pass never uses (as published): training freezes them so that
    DistributedDataParallel needs no unused-parameter search."""
    names = []
    for name, _ in model.named_parameters():
        if name.endswith("mask_token") or ".refinenet4.resConfUnit1." in name:
            names.append(name)
        elif name.startswith("hybrid_fusion.blocks.0.") and ".context_proj." in name and not name.startswith(
                "hybrid_fusion.blocks.0.0."):
            names.append(name)
        elif name.startswith("teacher_model.depth_head.") and not any(
                k in name for k in ("projects.3.", "resize_layers.3.", "layer4_rn", "refinenet4.resConfUnit2.",
                                    "refinenet4.out_conv.")):
            names.append(name)  # the teacher computes level 4 only (refinenet4 sizes path_4 from the grid)
    return names


def apply_freezing(model: FlashDepth, prefixes: Iterable[str]) -> list[str]:
    frozen = set(frozen_by_design(model))
    prefixes = tuple(prefixes)
    for name, p in model.named_parameters():
        if name in frozen or (prefixes and name.startswith(prefixes)):
            p.requires_grad_(False)
    return [n for n, p in model.named_parameters() if not p.requires_grad]


GROUPS = (("pretrained.", "lr_vit"), ("depth_head.", "lr_dpt"), ("mamba.", "lr_temporal"),
          ("hybrid_fusion.", "lr_fusion"), ("teacher_model.", "lr_vit"))


def build_optimizer(model: FlashDepth, config: TrainConfig, fused: Optional[bool] = None) -> torch.optim.AdamW:
    """AdamW with the published per-part learning rates; frozen parameters are left out.

    ``fused``: torch's fused AdamW, which can skip a step on a device-side flag (``found_inf``)
    without the host waiting for the device; None = fused wherever torch has the kernel for the
    parameters' device and dtype, else the multi-tensor reference (decided here, once).
    """
    groups = []
    for prefix, key in GROUPS:
        params = [p for n, p in model.named_parameters() if n.startswith(prefix) and p.requires_grad]
        if params:
            groups.append({"params": params, "lr": getattr(config.optim, key), "name": prefix.rstrip(".")})
    options = dict(betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay)
    if fused is None:
        try:
            return torch.optim.AdamW(groups, fused=True, **options)
        except RuntimeError:  # no fused kernel for this device or dtype
            return torch.optim.AdamW(groups, fused=False, **options)
    return torch.optim.AdamW(groups, fused=fused, **options)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, schedule: str = "constant",
                    total_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from lr/warmup to lr over ``warmup_steps``, then constant, or (``cosine``)
    a half cosine from lr down to 0 at ``total_steps`` (a cool-down: constant-rate training ends
    on a noisy iterate; the decay averages it out)."""
    after_warmup = choose(SCHEDULES, schedule, "optim.schedule").after_warmup

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return after_warmup((step - warmup_steps) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)