"""The recurrent temporal module: Mamba2 blocks on pooled DPT features.

Glossary (Mamba2 / SSD):
  d_model  width of the DPT path the module sits on          L  tokens per frame (h' * w')
  d_inner  expand * d_model                                   H  nheads = d_inner / headdim
  P        headdim                                            N  d_state
  A        per-head decay rate, A = -exp(A_log) < 0           dt per-token step, softplus(dt + dt_bias)
  B, C     input / output projections of the state (N)        D  per-head skip
  h        SSM state (B, H, P, N), carried from frame to frame

Per frame: average-pool the features to (int(0.1 h), int(0.1 w)), take the tokens in raster
order, run the Mamba blocks (each with its own SSM state), upsample back bilinearly, apply
``final_layer`` (GELU -> Linear) per pixel and add the input. Only the SSM state crosses
frames: the depthwise conv restarts from zero padding at every frame, as in the published model.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TemporalConfig
from ..ops import use_fast_path
from ..ops.ssd import ssd_scan


def adaptive_avg_pool2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` with PyTorch's (overlapping) bins on every backend.

    MPS only pools when the input is divisible by the output; there the same bins
    (start = floor(i * n / m), end = ceil((i + 1) * n / m)) are averaged from an integral image.
    """
    if x.device.type != "mps":
        return F.adaptive_avg_pool2d(x, size)
    return pool_by_bins(x, size)


def pool_by_bins(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling from an integral image (any backend)."""
    h, w = x.shape[-2:]
    oh, ow = size
    work = x.to(torch.promote_types(x.dtype, torch.float32))
    integral = F.pad(work.cumsum(-2).cumsum(-1), (1, 0, 1, 0))  # (..., h+1, w+1)
    ys = torch.arange(oh, device=x.device)
    xs = torch.arange(ow, device=x.device)
    y0, y1 = (ys * h) // oh, ((ys + 1) * h + oh - 1) // oh
    x0, x1 = (xs * w) // ow, ((xs + 1) * w + ow - 1) // ow
    total = (integral[..., y1[:, None], x1[None, :]] - integral[..., y0[:, None], x1[None, :]]
             - integral[..., y1[:, None], x0[None, :]] + integral[..., y0[:, None], x0[None, :]])
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).to(total.dtype)
    return (total / area).to(x.dtype)


class GatedRMSNorm(nn.Module):
    """rmsnorm(y * silu(z)) * weight over groups of d_inner / ngroups channels, in float32."""

    def __init__(self, dim: int, ngroups: int = 1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.ngroups, self.eps = ngroups, eps

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        g = y.float() * F.silu(z.float())  # (..., d_inner)
        g = g.unflatten(-1, (self.ngroups, -1))  # (..., G, d_inner/G)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return (g.flatten(-2) * self.weight.float()).to(dtype)


class Mamba2(nn.Module):
    """Mamba2 mixer over the tokens of T consecutive frames, the SSM state carried between them."""

    fast_path_op = "ssd"  # the op whose fast path ``fused`` selects

    def __init__(self, d_model: int, cfg: TemporalConfig):
        super().__init__()
        self.d_inner = cfg.expand * d_model
        self.d_state, self.d_conv, self.ngroups = cfg.d_state, cfg.d_conv, cfg.ngroups
        self.headdim, self.chunk_size = cfg.headdim, cfg.chunk_size
        self.fused = use_fast_path(self.fast_path_op)  # decided once; FlashDepth.set_fast_paths changes it
        self.nheads = self.d_inner // cfg.headdim
        conv_dim = self.d_inner + 2 * cfg.ngroups * cfg.d_state
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.empty(self.nheads))
        self.D = nn.Parameter(torch.ones(self.nheads))
        # in_proj output order: [z (d_inner), xBC (d_inner + 2 G N), dt (H)]
        self.in_proj = nn.Linear(d_model, self.d_inner + conv_dim + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, cfg.d_conv, groups=conv_dim, padding=cfg.d_conv - 1)
        self.norm = GatedRMSNorm(self.d_inner, cfg.ngroups, eps=1e-5)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4,
                             a_range: tuple[float, float] = (1.0, 16.0)) -> None:
        """Mamba2's initialisation: dt log-uniform in [dt_min, dt_max], A uniform in a_range, D = 1."""
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_log.copy_(torch.log(torch.empty(self.nheads).uniform_(*a_range)))
        self.D.fill_(1.0)

    def forward(self, u: torch.Tensor, state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (B, T, L, d_model) tokens of T frames; state: (B, H, P, N) or None -> (y, new state)."""
        b, t, l, _ = u.shape
        zxbcdt = self.in_proj(u)  # (B, T, L, d_in_proj)
        z, xbc, dt = zxbcdt.split([self.d_inner, zxbcdt.shape[-1] - self.d_inner - self.nheads, self.nheads], dim=-1)
        # The causal conv is zero-padded at the start of every frame (per-frame semantics).
        xbc = xbc.reshape(b * t, l, -1).transpose(1, 2)  # (B*T, conv_dim, L)
        xbc = F.silu(self.conv1d(xbc)[..., :l]).transpose(1, 2).reshape(b, t * l, -1)  # (B, T*L, conv_dim)
        x, bm, cm = xbc.split([self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        dt = F.softplus(dt.reshape(b, t * l, self.nheads).float() + self.dt_bias.float())  # (B, T*L, H)
        A = -torch.exp(self.A_log.float())  # (H,)
        y, state = ssd_scan(
            x.reshape(b, t * l, self.nheads, self.headdim),  # (B, T*L, H, P)
            dt, A,
            bm.reshape(b, t * l, self.ngroups, self.d_state),  # (B, T*L, G, N)
            cm.reshape(b, t * l, self.ngroups, self.d_state),
            D=self.D, initial_state=state, chunk_size=self.chunk_size, fused=self.fused,
        )
        y = self.norm(y.reshape(b, t, l, self.d_inner), z)  # (B, T, L, d_inner)
        return self.out_proj(y), state


class MambaBlock(nn.Module):
    def __init__(self, d_model: int, cfg: TemporalConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.mamba = Mamba2(d_model, cfg)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model * cfg.mlp_ratio), nn.GELU(),
                                 nn.Linear(d_model * cfg.mlp_ratio, d_model))

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        y, state = self.mamba(self.norm1(x), state)
        x = x + y
        return x + self.mlp(self.norm2(x)), state


class TemporalModule(nn.Module):
    """``mamba.*`` in the published checkpoints: ``blocks[0]`` is the stack at ``cfg.dpt_layer``."""

    def __init__(self, d_model: int, cfg: TemporalConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList([nn.ModuleList(MambaBlock(d_model, cfg) for _ in range(cfg.num_blocks))])
        self.final_layer = nn.Sequential(nn.GELU(), nn.Linear(d_model, d_model))
        self.zero_init_output()
        self.grad_checkpointing = False

    @torch.no_grad()
    def zero_init_output(self) -> None:
        """The published initialisation: the module starts as an identity."""
        nn.init.zeros_(self.final_layer[1].weight)
        nn.init.zeros_(self.final_layer[1].bias)

    @property
    def num_states(self) -> int:
        return len(self.blocks[0])

    def pooled_size(self, h: int, w: int) -> tuple[int, int]:
        return int(h * self.cfg.downsample), int(w * self.cfg.downsample)

    def forward(self, feat: torch.Tensor, states: Optional[Sequence[torch.Tensor]]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """feat: (B, T, C, h, w) for T consecutive frames -> (same shape, new states)."""
        b, t, c, h, w = feat.shape
        frames = feat.reshape(b * t, c, h, w)
        downsampled = self.cfg.downsample != 1.0
        if downsampled:
            ph, pw = self.pooled_size(h, w)
            pooled = adaptive_avg_pool2d(frames, (ph, pw))  # (B*T, C, h', w')
        else:
            ph, pw, pooled = h, w, frames
        x = pooled.flatten(2).transpose(1, 2).reshape(b, t, ph * pw, c)  # (B, T, L, C), raster order
        new_states = []
        for i, block in enumerate(self.blocks[0]):
            s = None if states is None else states[i]
            if self.grad_checkpointing and torch.is_grad_enabled():
                x, s = torch.utils.checkpoint.checkpoint(block, x, s, use_reentrant=False)
            else:
                x, s = block(x, s)
            new_states.append(s)
        x = x.reshape(b * t, ph * pw, c).transpose(1, 2).reshape(b * t, c, ph, pw)  # (B*T, C, h', w')
        if downsampled:
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)  # (B*T, C, h, w)
        x = self.final_layer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # per-pixel GELU -> Linear
        return (x + frames).reshape(b, t, c, h, w), tuple(new_states)
