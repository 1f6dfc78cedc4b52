"""The CPU stand-ins that benchmarks/official.py swaps into the official FlashDepth code.

The harness itself needs a checkout of the official repository, so only its replacements for the
CUDA kernels are tested here: if one of them computed something else, the official timings would
be of a different model (the harness's parity check would catch it too, but only with a checkout).
"""

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

SPEC = importlib.util.spec_from_file_location("official_harness",
                                              Path(__file__).parents[1] / "benchmarks" / "official.py")
harness = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(harness)


def test_ssd_stand_in_is_the_token_recurrence():
    g = torch.Generator().manual_seed(0)
    b, length, h, p, n, groups = 2, 70, 4, 3, 5, 2  # 70 tokens in chunks of 32: three chunks, one partial
    x, dt = torch.randn(b, length, h, p, generator=g), torch.randn(b, length, h, generator=g)
    A, D, bias = -torch.rand(h, generator=g), torch.randn(h, generator=g), torch.randn(h, generator=g)
    B, C = torch.randn(b, length, groups, n, generator=g), torch.randn(b, length, groups, n, generator=g)
    s0 = torch.randn(b, h, p, n, generator=g)
    y, final = harness._ssd_chunk_scan(x, dt, A, B, C, 32, D=D, dt_bias=bias, initial_states=s0,
                                       dt_softplus=True, return_final_states=True)
    step = F.softplus(dt + bias)
    Bh, Ch = B.repeat_interleave(h // groups, 2), C.repeat_interleave(h // groups, 2)
    state, ys = s0, []
    for t in range(length):
        state = (state * torch.exp(step[:, t] * A)[:, :, None, None]
                 + torch.einsum("bh,bhp,bhn->bhpn", step[:, t], x[:, t], Bh[:, t]))
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]) + D[:, None] * x[:, t])
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final, state, rtol=1e-4, atol=1e-4)


def test_gated_rmsnorm_and_attention_stand_ins():
    g = torch.Generator().manual_seed(1)
    norm = harness._GatedRMSNorm(8, eps=1e-5, group_size=4, norm_before_gate=False)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, generator=g))
    x, z = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    gated = (x * F.silu(z)).view(3, 2, 4)
    want = (gated / (gated.square().mean(-1, keepdim=True) + 1e-5).sqrt()).view(3, 8) * norm.weight
    torch.testing.assert_close(norm(x, z), want)

    q, k, v = (torch.randn(2, 5, 3, 4, generator=g) for _ in range(3))  # (B, N, heads, dim)
    scores = torch.einsum("bnhd,bmhd->bhnm", q, k) / 2.0
    want = torch.einsum("bhnm,bmhd->bnhd", scores.softmax(-1), v)
    torch.testing.assert_close(harness._sdpa_bnhd(q, k, v), want)
    torch.testing.assert_close(harness._flash_attn_func(q, k, v), want)
