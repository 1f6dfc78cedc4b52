"""Hybrid fusion of FlashDepth (Full): student path_4 tokens attend to the teacher's path_4.

``x`` (B, ph*pw, 64) are the student's tokens, ``ctx`` (B, M, 256) the teacher's, projected
once by block 0's ``context_proj`` and shared by all blocks (the other blocks' projections are
in the checkpoint but unused, as published).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import FusionConfig
from ..ops import use_fast_path
from ..ops.attention import attention


class CrossAttention(nn.Module):
    fast_path_op = "attention"  # the op whose fast path ``fused`` selects

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.fused = use_fast_path(self.fast_path_op)  # decided once; FlashDepth.set_fast_paths changes it
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)  # k = first dim outputs, v = the rest
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        m, hd = ctx.shape[1], c // self.num_heads
        q = self.q(x).reshape(b, n, self.num_heads, hd).transpose(1, 2)  # (B, heads, N, hd)
        kv = self.kv(ctx).reshape(b, m, 2, self.num_heads, hd).permute(2, 0, 3, 1, 4)  # (2, B, heads, M, hd)
        out = attention(q, kv[0], kv[1], self.fused)  # (B, heads, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class FusionBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int, cfg: FusionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attention = CrossAttention(dim, cfg.num_heads)
        self.context_norm = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * cfg.mlp_expand), nn.GELU(), nn.Linear(dim * cfg.mlp_expand, dim))
        self.context_proj = nn.Linear(context_dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), self.context_norm(ctx))
        return x + self.mlp(self.norm2(x))


class HybridFusion(nn.Module):
    """``hybrid_fusion.*``: one stack of cross-attention blocks on path_4."""

    def __init__(self, dim: int, context_dim: int, cfg: FusionConfig):
        super().__init__()
        self.blocks = nn.ModuleList([nn.ModuleList(FusionBlock(dim, context_dim, cfg) for _ in range(cfg.num_blocks))])
        self.zero_init_output()

    @torch.no_grad()
    def zero_init_output(self) -> None:
        """The published initialisation: every block starts as an identity."""
        for block in self.blocks[0]:
            nn.init.zeros_(block.attention.proj.weight)
            nn.init.zeros_(block.attention.proj.bias)
            nn.init.zeros_(block.mlp[-1].weight)
            nn.init.zeros_(block.mlp[-1].bias)

    def forward(self, path_4: torch.Tensor, teacher_path_4: torch.Tensor) -> torch.Tensor:
        """path_4: (B, C, h, w), teacher_path_4: (B, Ct, ht, wt) -> fused (B, C, h, w)."""
        b, c, h, w = path_4.shape
        x = path_4.flatten(2).transpose(1, 2)  # (B, h*w, C), raster order
        stack = self.blocks[0]
        ctx = stack[0].context_proj(teacher_path_4.flatten(2).transpose(1, 2))  # (B, M, C)
        for block in stack:
            x = block(x, ctx)
        return x.transpose(1, 2).reshape(b, c, h, w)
