"""The training loss as a module, so that DistributedDataParallel's forward is what runs."""

from __future__ import annotations

import torch
import torch.nn as nn

TARGET_SCALE = 100.0  # ground truth inverse depth (1/m) x 100: the published models' units


class DepthLoss(nn.Module):
    """``loss = DepthLoss(model)(video, target)``.

    video: (B, T, 3, H, W) normalised; target: (B, T, H, W) inverse depth, -1 invalid, 0 sky.
    ``l1``: mean |pred - 100 * target| over valid pixels (sky included, supervised towards 0).
    ``ssi``: the same after a per-frame least-squares scale and shift of the prediction.
    """

    def __init__(self, model: nn.Module, kind: str = "l1"):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, _ = self.model.forward_sequence(video)  # (B, T, H, W)
        pred = pred.float()
        gt = target.float() * TARGET_SCALE
        valid = gt >= 0
        if self.kind == "ssi":
            pred = _align_per_frame(pred, gt, valid)
        if not valid.any():
            return pred.sum() * 0.0  # keeps every parameter in the graph (DDP)
        return (pred - gt).abs()[valid].mean()


def _align_per_frame(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    m = valid.float()
    n = m.sum(dim=(-2, -1)).clamp_min(1.0)
    sp, sg = (pred * m).sum((-2, -1)), (gt * m).sum((-2, -1))
    spp, spg = (pred * pred * m).sum((-2, -1)), (pred * gt * m).sum((-2, -1))
    det = (spp * n - sp * sp).clamp_min(1e-6)
    scale = (spg * n - sp * sg) / det
    shift = (sg - scale * sp) / n
    return pred * scale[..., None, None] + shift[..., None, None]
