"""Model construction for training, parameter groups and the learning-rate schedule."""

from __future__ import annotations

from typing import Iterable, Optional

import torch

from ..errors import ConfigError
from ..models import FlashDepth
from ..inference.registry import get_config
from ..inference.weights import check_fit, model_from_checkpoint, read_checkpoint
from .choices import SCHEDULES, choose
from .config import TrainConfig


def build_model(config: TrainConfig) -> FlashDepth:
    """The model to train, initialised as the recipe says.

    Stage 1: ``init`` is a Depth Anything V2 (or FlashDepth) checkpoint; the temporal module
    starts at its published zero initialisation. Stage 2: ``init_student`` (FlashDepth-S) fills
    the student and its temporal module, ``init_teacher`` (FlashDepth-L) the teacher branch; the
    fusion starts at its zero initialisation.
    """
    model_config = config.model_config or get_config(config.model)
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
        return model
    if config.init:
        return model_from_checkpoint(config.init, model_config)
    return FlashDepth(model_config)


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