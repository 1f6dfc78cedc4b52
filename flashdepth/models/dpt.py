"""The DPT decoder of Depth Anything V2, run stage by stage so a temporal module can sit between.

Two numberings, each the published one: *paths* are numbered 1..4 from fine to coarse (path_4 at
1x the ph x pw patch grid, path_3 at 2x, path_2 at 4x, path_1 at 8x; ``layer{k}_rn`` and
``refinenet{k}`` belong to path k), and decoder *stages* 0..3 in the order they run (stage s
produces path_{4-s}). Module names follow the published checkpoints (``depth_head.*``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DPTConfig
from ..ops import use_fast_path

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


#: the last convolution's bias in a freshly built relative head (model units): well above the
#: spread of its other terms at initialisation, see DPTHead.__init__
HEAD_BIAS_INIT = 1.0


class DPTHead(nn.Module):
    """``depth_head.*``. Its convolutions run in channels-last memory format by default (the fast
    path: oneDNN and cuDNN convolve NHWC without reordering, and upsampling vectorises over
    channels); ``fused = False`` is the plain NCHW reference. Same values either way."""

    fast_path_op = "channels_last"  # the op whose fast path ``fused`` selects

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
            # The metric models end in a sigmoid (times max_depth, in head()); no parameters either
            # way, so both load the same checkpoint layout.
            nn.Sigmoid() if cfg.max_depth > 0 else nn.ReLU(),
        )
        if cfg.max_depth <= 0:
            # A fresh head's last pre-activation is nearly the same at every pixel (about +-0.15), so
            # with a zero-mean bias half of all random seeds start with that value below zero at every
            # pixel: the final ReLU then outputs 0 everywhere, passes no gradient, and training from
            # scratch never starts. A positive bias starts every pixel alive; loaded weights replace it.
            nn.init.constant_(self.scratch.output_conv2[2].bias, HEAD_BIAS_INIT)
        self.max_depth = cfg.max_depth
        self.fused = use_fast_path(self.fast_path_op)

    @property
    def fused(self) -> bool:
        return self._channels_last

    @fused.setter
    def fused(self, value: bool) -> None:
        """Switch the layout of the convolution weights with the activations', so no convolution
        ever sees mixed layouts."""
        self._channels_last = bool(value)
        self.to(memory_format=torch.channels_last if value else torch.contiguous_format)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)

    def levels(self, tokens: Sequence[torch.Tensor], ph: int, pw: int,
               paths: Sequence[int] = (1, 2, 3, 4)) -> dict[int, torch.Tensor]:
        """ViT tokens (B, ph*pw, D), one per intermediate layer -> {k: (B, features, h_k, w_k)}.

        Keys are path numbers as in the paper and the checkpoints: ``tokens[k - 1]`` goes through
        ``projects[k - 1]``, ``resize_layers[k - 1]`` and ``layer{k}_rn`` and feeds path_k.
        """
        out = {}
        for k in paths:
            t = tokens[k - 1]
            x = self._layout(t.transpose(1, 2).reshape(t.shape[0], t.shape[-1], ph, pw))  # (B, D, ph, pw)
            x = self.resize_layers[k - 1](self.projects[k - 1](x))  # (B, oc, s_k*ph, s_k*pw)
            out[k] = getattr(self.scratch, f"layer{k}_rn")(x)  # (B, features, ...)
        return out

    def refine(self, stage: int, path: Optional[torch.Tensor], levels: dict[int, torch.Tensor],
               size: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Decoder stage ``stage`` (0..3, in the order the decoder runs) -> path_{4 - stage}.

        Stage 0 is refinenet4 on level 4 alone (path_4 at the patch grid); stage s > 0 fuses the
        previous path with level 4 - s in refinenet{4 - s} and upsamples to the next level's size
        (path_3 at 2x, path_2 at 4x, path_1 at 8x the grid). The published configs place the
        temporal module by this stage index (``mamba_in_dpt_layer``). ``size`` gives stage 0's
        output size (the patch grid) when level 3 was not computed.
        """
        k = 4 - stage
        block = getattr(self.scratch, f"refinenet{k}")
        if path is not None:
            path = self._layout(path)  # a module between stages may hand back another layout
        if stage == 0:
            return block(levels[4], size=size or levels[3].shape[-2:])  # (B, f, ph, pw)
        if k == 1:
            return block(path, levels[1])  # (B, f, 8ph, 8pw)
        return block(path, levels[k], size=levels[k - 1].shape[-2:])  # (B, f, 2^(4-k) ph, ...)

    def head(self, path_1: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """path_1 (B, f, h1, w1) -> (B, height, width): non-negative relative inverse depth, or metric
        depth in (0, max_depth) metres for a metric head."""
        out = self.scratch.output_conv1(path_1)  # (B, f/2, h1, w1)
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=True)
        # output_conv2 ends in a ReLU; the published forward applies ReLU (and a clamp at 0) once
        # more, which on a ReLU's output is the identity.
        out = self.scratch.output_conv2(out).squeeze(1)  # (B, H, W)
        return out * self.max_depth if self.max_depth > 0 else out
