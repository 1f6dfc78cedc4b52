"""The DPT decoder of Depth Anything V2, with a hook where a temporal module can sit.

Level k of the decoder ("path") and its resolution relative to the ph x pw patch grid:
path_4 at 1x, path_3 at 2x, path_2 at 4x, path_1 at 8x. Module names follow the published
checkpoints (``depth_head.*``).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DPTConfig

PathHook = Callable[[int, torch.Tensor], torch.Tensor]


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """refinenet: fuse the coarser path with this level's features, upsample, 1x1 conv."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    def __init__(self, in_channels: int, cfg: DPTConfig):
        super().__init__()
        oc, f = cfg.out_channels, cfg.features
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),  # 4x
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),  # 2x
            nn.Identity(),  # 1x
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),  # 1/2x (ceil)
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(oc, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, f, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(f))
        self.scratch.output_conv1 = nn.Conv2d(f, f // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(f // 2, cfg.head_hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(cfg.head_hidden, 1, 1),
            nn.ReLU(),
        )

    def levels(self, tokens: Sequence[torch.Tensor], ph: int, pw: int,
               which: Sequence[int] = (0, 1, 2, 3)) -> dict[int, torch.Tensor]:
        """ViT tokens (B, ph*pw, D) per level -> {level: (B, features, h_k, w_k)} for ``which``."""
        out = {}
        for i in which:
            t = tokens[i]
            x = t.transpose(1, 2).reshape(t.shape[0], t.shape[-1], ph, pw)  # (B, D, ph, pw)
            x = self.resize_layers[i](self.projects[i](x))  # (B, oc_i, s_i*ph, s_i*pw)
            out[i] = getattr(self.scratch, f"layer{i + 1}_rn")(x)  # (B, features, ...)
        return out

    def path4(self, layers: dict[int, torch.Tensor]) -> torch.Tensor:
        """refinenet4 on the coarsest level, upsampled to level 3's size (the patch grid)."""
        return self.scratch.refinenet4(layers[3], size=layers[2].shape[-2:])  # (B, f, ph, pw)

    def decode(self, layers: dict[int, torch.Tensor], path_4: Optional[torch.Tensor] = None,
               hook: Optional[PathHook] = None) -> torch.Tensor:
        """Run the refinenets from path_4 down to path_1 (B, f, 8ph, 8pw).

        ``hook(k, path)`` replaces path_4 (k=0), path_3 (1), path_2 (2) or path_1 (3) right after
        its refinenet; the temporal module is attached here.
        """
        hook = hook or (lambda k, x: x)
        s = self.scratch
        path = self.path4(layers) if path_4 is None else path_4
        path = hook(0, path)
        path = hook(1, s.refinenet3(path, layers[2], size=layers[1].shape[-2:]))  # 2x grid
        path = hook(2, s.refinenet2(path, layers[1], size=layers[0].shape[-2:]))  # 4x grid
        return hook(3, s.refinenet1(path, layers[0]))  # 8x grid

    def head(self, path_1: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """path_1 (B, f, h1, w1) -> non-negative depth (B, height, width)."""
        out = self.scratch.output_conv1(path_1)  # (B, f/2, h1, w1)
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=True)
        return F.relu(self.scratch.output_conv2(out)).squeeze(1)  # (B, H, W)
