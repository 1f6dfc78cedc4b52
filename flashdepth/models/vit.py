"""DINOv2 ViT encoder, as Depth Anything V2 uses it (no register tokens, LayerScale, qkv bias).

Module and parameter names follow the published checkpoints (``pretrained.*``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..config import STEMS, Stem, ViTConfig
from ..device import interpolate_bicubic
from ..ops import use_fast_path
from ..ops.attention import attention


class PatchEmbed(nn.Module):
    """Pixels -> one token per patch: the stem's convolutions (none for DINOv2's), then ``proj``,
    a projection whose stride makes the whole stride the patch size."""

    def __init__(self, patch_size: int, embed_dim: int, stem: Stem = STEMS["patch"]):
        super().__init__()
        layers, channels = [], 3
        for i in range(stem.convs):
            layers += [nn.Conv2d(channels, stem.width, 3, stride=2 if i == 0 else 1, padding=1), nn.GELU()]
            channels = stem.width
        self.stem = nn.Sequential(*layers) if layers else None  # no parameters for DINOv2's layout
        step = patch_size // (2 if stem.convs else 1)
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=step, stride=step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)  # (B, width, H/2, W/2)
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, ph*pw, D), raster order


class SelfAttention(nn.Module):
    fast_path_op = "attention"  # the op whose fast path ``fused`` selects

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.fused = use_fast_path(self.fast_path_op)  # decided once; FlashDepth.set_fast_paths changes it
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(qkv[0], qkv[1], qkv[2], self.fused)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = SelfAttention(d, cfg.num_heads)
        self.ls1 = LayerScale(d)
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.ls2 = LayerScale(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid ** 2, d))
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # unused at inference; kept for the layout
        self.patch_embed = PatchEmbed(cfg.patch_size, d, STEMS[cfg.stem])
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.grad_checkpointing = False
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolated_pos_embed(self, ph: int, pw: int, height: int, width: int) -> torch.Tensor:
        """Pos-embed for a ph x pw grid, exactly as DINOv2 / Depth Anything V2 compute it.

        The stored embedding is used as is only for a pos_grid^2 token count *and* a square input
        in pixels; every other size goes through bicubic resampling driven by ``scale_factor``
        (with DINOv2's +0.1 offset), which samples differently from ``size=(ph, pw)``.
        """
        grid = self.cfg.pos_grid
        if ph * pw == grid * grid and height == width:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]  # (1, 1, D), (1, G*G, D)
        d = pos.shape[-1]
        sqrt_n = math.sqrt(grid * grid)
        scale = ((ph + self.cfg.interpolate_offset) / sqrt_n, (pw + self.cfg.interpolate_offset) / sqrt_n)
        patch_pos = interpolate_bicubic(patch_pos.reshape(1, grid, grid, d).permute(0, 3, 1, 2),
                                        scale_factor=scale, antialias=False)  # (1, D, ph, pw)
        if patch_pos.shape[-2:] != (ph, pw):
            raise RuntimeError(f"pos-embed resampling gave {tuple(patch_pos.shape[-2:])}, expected {(ph, pw)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, ph * pw, d)
        return torch.cat([cls_pos, patch_pos], dim=1).to(self.pos_embed.dtype)

    def intermediate_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) normalised, H and W multiples of the patch -> 4 x (B, ph*pw, D).

        The outputs of the blocks at ``layer_indices``, each through the final norm, without
        the class token.
        """
        b, _, height, width = x.shape
        ph, pw = height // self.cfg.patch_size, width // self.cfg.patch_size
        tokens = self.patch_embed(x)  # (B, ph*pw, D)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, 1+ph*pw, D)
        tokens = tokens + self.interpolated_pos_embed(ph, pw, height, width).to(tokens.dtype)
        wanted = set(self.cfg.layer_indices)
        outputs = []
        for i, block in enumerate(self.blocks):
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
            if i in wanted:
                outputs.append(tokens)
            if len(outputs) == len(wanted):
                break  # later blocks cannot change the returned features
        return [self.norm(t)[:, 1:] for t in outputs]
