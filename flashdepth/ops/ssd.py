"""The SSD scan of Mamba2 (state-space duality), with an initial state and a final state.

Per head, with decay ``a_t = A * dt_t`` (A < 0, dt >= 0):

    h_t = exp(a_t) * h_{t-1} + dt_t * x_t B_t^T        h: (headdim P, d_state N)
    y_t = C_t h_t + D * x_t

``ssd_scan_reference`` computes this in chunks of ``chunk_size`` tokens: inside a chunk as a
masked, decayed "attention" (C B^T), across chunks by carrying the state. ``ssd_scan(...,
fused=True)`` uses ``mamba_ssm``'s Triton kernel for CUDA tensors when it is installed (looked up
once), and the reference otherwise. ``ssd_scan_naive`` is the token-by-token recurrence, kept as
the ground truth that tests compare both against.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _segment_sums(a: Tensor) -> Tensor:
    """a: (..., Q) -> (..., Q, Q) with [t, s] = a_{s+1} + ... + a_t for s <= t, -inf above.

    Summing each segment directly (rather than differencing a long cumulative sum) keeps the
    exponents exact when the cumulative decay is large.
    """
    q = a.shape[-1]
    strictly_lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(-1)
    terms = a[..., :, None].expand(*a.shape, q).masked_fill(~strictly_lower, 0.0)  # [t, s] = a_t if t > s
    sums = terms.cumsum(dim=-2)  # (..., Q, Q)
    lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(0)
    return sums.masked_fill(~lower, float("-inf"))


def _expand_groups(m: Tensor, nheads: int) -> Tensor:
    """(b, l, g, n) -> (b, l, h, n): heads of a group share its B/C."""
    return m.repeat_interleave(nheads // m.shape[2], dim=2)


def _skip(y: Tensor, x: Tensor, D: Optional[Tensor]) -> Tensor:
    if D is None:
        return y
    d = D if D.dim() == 2 else D[:, None]  # (h, p) or (h, 1)
    return y + x * d.to(y.dtype)


def ssd_scan_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    initial_state: Optional[Tensor] = None,
    chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD scan.

    x: (b, l, h, p); dt: (b, l, h) after softplus; A: (h,); B, C: (b, l, g, n); D: (h,) or (h, p);
    initial_state: (b, h, p, n) or None (zeros). Returns y (b, l, h, p) in x's dtype and the final
    state (b, h, p, n) in float32 (float64 if x is float64).

    The scan runs in its working precision even inside ``torch.autocast``: autocast would run its
    einsums in bf16/fp16, and the rounding would be carried by the state from frame to frame.
    """
    with torch.autocast(x.device.type, enabled=False):
        return _ssd_scan_reference(x, dt, A, B, C, D, initial_state, chunk_size)


def _ssd_scan_reference(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                        initial_state: Optional[Tensor], chunk_size: int) -> tuple[Tensor, Tensor]:
    out_dtype = x.dtype
    work = torch.promote_types(x.dtype, torch.float32)
    b, l, h, p = x.shape
    n = B.shape[-1]
    x, dt, A = x.to(work), dt.to(work), A.to(work)
    Bh, Ch = _expand_groups(B.to(work), h), _expand_groups(C.to(work), h)  # (b, l, h, n)

    # A chunk never longer than the sequence: one frame's few tokens (49 for FlashDepth-S at
    # 518x518) are not padded to a whole chunk of 256. The chunk length changes only the
    # summation order.
    q = max(1, min(chunk_size, l))
    pad = (-l) % q
    if pad:
        # dt = 0 on padding: no decay and no input, so the state passes through unchanged.
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        Bh, Ch = F.pad(Bh, (0, 0, 0, 0, 0, pad)), F.pad(Ch, (0, 0, 0, 0, 0, pad))
    nc = (l + pad) // q
    xc = x.reshape(b, nc, q, h, p)
    Bc, Cc = Bh.reshape(b, nc, q, h, n), Ch.reshape(b, nc, q, h, n)
    dtc = dt.reshape(b, nc, q, h)

    a = (dtc * A).permute(0, 3, 1, 2)  # (b, h, nc, q): log-decay per token
    a_cum = a.cumsum(dim=-1)  # (b, h, nc, q): log-decay from chunk start through token t
    decay = torch.exp(_segment_sums(a))  # (b, h, nc, q, q): [t, s] = decay from s to t
    xdt = xc * dtc[..., None]  # (b, nc, q, h, p)

    # Within a chunk: y_t = sum_{s<=t} (C_t . B_s) decay[t, s] dt_s x_s.
    scores = torch.einsum("bcthn,bcshn->bhcts", Cc, Bc) * decay  # (b, h, nc, q, q)
    y = torch.einsum("bhcts,bcshp->bcthp", scores, xdt)  # (b, nc, q, h, p)

    # Each chunk's own contribution to the state at its end (from a zero start).
    to_end = decay[..., -1, :]  # (b, h, nc, q): decay from s to the chunk's last token
    chunk_states = torch.einsum("bhcs,bcshn,bcshp->bchpn", to_end, Bc, xdt)  # (b, nc, h, p, n)
    chunk_decay = torch.exp(a_cum[..., -1])  # (b, h, nc)

    state = (torch.zeros(b, h, p, n, dtype=work, device=x.device) if initial_state is None
             else initial_state.to(work))
    starts = []
    for c in range(nc):
        starts.append(state)
        state = chunk_decay[:, :, c, None, None] * state + chunk_states[:, c]
    start_states = torch.stack(starts, dim=1)  # (b, nc, h, p, n): state entering each chunk

    # Across chunks: the entering state, decayed to token t and read out by C_t.
    y = y + torch.einsum("bcthn,bchpn,bhct->bcthp", Cc, start_states, torch.exp(a_cum))
    y = y.reshape(b, nc * q, h, p)[:, :l]
    y = _skip(y, x[:, :l], D)
    return y.to(out_dtype), state


def ssd_scan_naive(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    initial_state: Optional[Tensor] = None,
    chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """The recurrence one token at a time (slow; ground truth for tests). Same signature."""
    b, l, h, p = x.shape
    n = B.shape[-1]
    work = torch.promote_types(x.dtype, torch.float32)
    Bh, Ch = _expand_groups(B.to(work), h), _expand_groups(C.to(work), h)
    x, dt, A = x.to(work), dt.to(work), A.to(work)
    state = (torch.zeros(b, h, p, n, dtype=work, device=x.device) if initial_state is None
             else initial_state.to(work))
    ys = []
    for t in range(l):
        da = torch.exp(dt[:, t] * A)  # (b, h)
        state = da[:, :, None, None] * state + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p)
    return _skip(y, x, D), state


@functools.cache
def _mamba_ssm_kernel():
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # not installed, or installed without a working Triton/CUDA
        return None
    return mamba_chunk_scan_combined


def fast_path_available(device: torch.device) -> bool:
    return device.type == "cuda" and _mamba_ssm_kernel() is not None


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    initial_state: Optional[Tensor] = None,
    chunk_size: int = 256,
    fused: bool = True,
) -> tuple[Tensor, Tensor]:
    """Dispatching SSD scan; see :func:`ssd_scan_reference` for the contract."""
    kernel = _mamba_ssm_kernel() if fused and x.is_cuda else None
    if kernel is None:
        return ssd_scan_reference(x, dt, A, B, C, D, initial_state, chunk_size)
    init = None if initial_state is None else initial_state.float().contiguous()
    y, final = kernel(x.contiguous(), dt.float().contiguous(), A.float(), B.contiguous(), C.contiguous(),
                      chunk_size, D=D, initial_states=init, return_final_states=True)
    return y.to(x.dtype), final.float()
