"""The training loss as a module, so that DistributedDataParallel's forward is what runs."""

from __future__ import annotations

import torch
import torch.nn as nn

from .choices import LOSSES, choose

TARGET_SCALE = 100.0  # ground truth inverse depth (1/m) x 100: the published models' units


class DepthLoss(nn.Module):
    """``loss = DepthLoss(model)(video, target)``.

    video: (B, T, 3, H, W) normalised; target: (B, T, H, W) inverse depth, -1 invalid, 0 sky.
    ``kind``: a row of :data:`flashdepth.train.choices.LOSSES` (``l1``: mean |pred - 100 * target|
    over valid pixels, sky included, supervised towards 0; ``ssi``: the same after a per-frame
    least-squares scale and shift of the prediction).
    """

    def __init__(self, model: nn.Module, kind: str = "l1"):
        super().__init__()
        self.model, self.kind = model, kind
        self.align = choose(LOSSES, kind, "loss").align

    def forward(self, video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, _ = self.model.forward_sequence(video)  # (B, T, H, W)
        pred = pred.float()
        gt = target.float() * TARGET_SCALE
        valid = gt >= 0
        if self.align is not None:
            pred = self.align(pred, gt, valid)  # (B, T, H, W)
        if not valid.any():
            return pred.sum() * 0.0  # keeps every parameter in the graph (DDP)
        return (pred - gt).abs()[valid].mean()

