"""The training loss as a module, so that DistributedDataParallel's forward is what runs."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .choices import LOSSES, TARGET_SCALE, TARGETS, check_loss_unit, choose

__all__ = ["DepthLoss", "TARGET_SCALE", "check_loss_unit"]


class DepthLoss(nn.Module):
    """``loss = DepthLoss(model)(video, target)``.

    video: (B, T, 3, H, W) normalised; target: (B, T, H, W) inverse depth, -1 invalid, 0 sky.
    ``kind``: a row of :data:`flashdepth.train.choices.LOSSES` (``l1``: mean |pred - 100 * target|
    over valid pixels, sky included, supervised towards 0; ``ssi``: the same after a per-frame
    least-squares scale and shift of the prediction; ``silog``: the scale-invariant log loss on
    depth in metres, for a model with a metric head). The row's unit says what the target becomes
    and must be the model's output unit.
    """

    def __init__(self, model: nn.Module, kind: str = "l1"):
        super().__init__()
        self.model, self.kind = model, kind
        row = choose(LOSSES, kind, "loss")
        config = getattr(model, "config", None)
        if config is not None:
            check_loss_unit(kind, config)
        self.align, self.reduce, self.target = row.align, row.reduce, TARGETS[row.unit]
        # the metric target keeps the ground truth a sigmoid head can reach (its cap)
        self.max_depth = config.dpt.max_depth if config is not None and config.dpt.max_depth > 0 else math.inf

    def forward(self, video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, _ = self.model.forward_sequence(video)  # (B, T, H, W)
        pred = pred.float()
        gt, valid = self.target(target.float(), self.max_depth)  # (B, T, H, W) each, in the row's unit
        if self.align is not None:
            pred = self.align(pred, gt, valid)  # (B, T, H, W)
        if not valid.any():
            return pred.sum() * 0.0  # keeps every parameter in the graph (DDP)
        return self.reduce(pred, gt, valid)
