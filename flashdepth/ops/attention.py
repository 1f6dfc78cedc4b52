"""Multi-head attention: ``softmax(q k^T / sqrt(d)) v``.

``attention(..., fused=True)`` runs ``torch.nn.functional.scaled_dot_product_attention`` (fused
kernels on CUDA/MPS/CPU); ``attention_reference`` is the explicit formula. Same result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q: (B, h, N, d), k/v: (B, h, M, d) -> (B, h, N, d). No mask; N != M allowed."""
    scale = q.shape[-1] ** -0.5
    scores = (q * scale) @ k.transpose(-2, -1)  # (B, h, N, M)
    return scores.softmax(dim=-1) @ v  # (B, h, N, d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fused: bool = True) -> torch.Tensor:
    """q: (B, h, N, d), k/v: (B, h, M, d) -> (B, h, N, d)."""
    if not fused:
        return attention_reference(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)
