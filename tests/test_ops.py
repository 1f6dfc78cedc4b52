"""Fast paths equal their references; the chunked SSD scan equals the token recurrence."""

import pytest
import torch

import flashdepth

from flashdepth.ops import attention as attn_ops
from flashdepth.ops import ssd as ssd_ops


def _ssd_inputs(b=2, l=77, h=4, p=3, n=5, g=2, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    x, B, C = r(b, l, h, p), r(b, l, g, n), r(b, l, g, n)
    dt = torch.rand(b, l, h, generator=gen, dtype=dtype)
    A = -3 * torch.rand(h, generator=gen, dtype=dtype)
    D = r(h)
    s0 = r(b, h, p, n)
    return x, dt, A, B, C, D, s0


@pytest.mark.parametrize("length,chunk", [(77, 16), (64, 16), (5, 16), (1, 4), (33, 256)])
def test_chunked_ssd_equals_token_recurrence(length, chunk):
    x, dt, A, B, C, D, s0 = _ssd_inputs(l=length)
    y_ref, s_ref = ssd_ops.ssd_scan_naive(x, dt, A, B, C, D, s0)
    y, s = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=chunk)
    assert torch.allclose(y, y_ref, atol=1e-10, rtol=1e-10)
    assert torch.allclose(s, s_ref, atol=1e-10, rtol=1e-10)


def test_ssd_state_chains_across_calls():
    x, dt, A, B, C, D, s0 = _ssd_inputs(l=50)
    y_all, s_all = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=8)
    y1, s1 = ssd_ops.ssd_scan_reference(x[:, :21], dt[:, :21], A, B[:, :21], C[:, :21], D, s0, chunk_size=8)
    y2, s2 = ssd_ops.ssd_scan_reference(x[:, 21:], dt[:, 21:], A, B[:, 21:], C[:, 21:], D, s1, chunk_size=8)
    assert torch.allclose(torch.cat([y1, y2], 1), y_all, atol=1e-10)
    assert torch.allclose(s2, s_all, atol=1e-10)


def test_ssd_initial_state_matters():
    x, dt, A, B, C, D, s0 = _ssd_inputs(l=10)
    y0, _ = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, None, chunk_size=4)
    y1, _ = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=4)
    assert not torch.allclose(y0, y1)


def test_ssd_float32_keeps_dtype_and_accuracy():
    x, dt, A, B, C, D, s0 = _ssd_inputs(l=300)
    y64, _ = ssd_ops.ssd_scan_naive(x, dt, A, B, C, D, s0)
    y32, s32 = ssd_ops.ssd_scan_reference(*(t.float() for t in (x, dt, A, B, C, D, s0)), chunk_size=256)
    assert y32.dtype == torch.float32 and s32.dtype == torch.float32
    assert (y32.double() - y64).norm() / y64.norm() < 1e-5


def test_dispatch_uses_reference_on_cpu_and_when_not_fused():
    x, dt, A, B, C, D, s0 = (t.float() for t in _ssd_inputs(l=20))
    y_ref, _ = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=8)
    assert torch.equal(ssd_ops.ssd_scan(x, dt, A, B, C, D, s0, chunk_size=8)[0], y_ref)
    assert torch.equal(ssd_ops.ssd_scan(x, dt, A, B, C, D, s0, chunk_size=8, fused=False)[0], y_ref)


@pytest.mark.parametrize("n,m", [(7, 7), (12, 5)])
def test_sdpa_attention_equals_reference(n, m):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, s, 8, generator=gen) for s in (n, m, m))
    assert torch.allclose(attn_ops.attention(q, k, v), attn_ops.attention_reference(q, k, v), atol=1e-6)


def test_fast_path_choice_is_made_at_construction_and_switchable(monkeypatch):
    from flashdepth import ops
    from flashdepth.models import FlashDepth

    from conftest import TINY

    model = FlashDepth(TINY["full"])
    assert model.fast_paths() == {"attention": True, "ssd": True, "channels_last": True}
    with ops.reference_paths("attention"):
        built = FlashDepth(TINY["full"])
    assert built.fast_paths() == {"attention": False, "ssd": True, "channels_last": True}
    assert FlashDepth(TINY["s"]).fast_paths()["attention"]  # the default is back after the block
    model.set_fast_paths(attention=False, ssd=False, channels_last=False)
    assert model.fast_paths() == {"attention": False, "ssd": False, "channels_last": False}
    conv = model.depth_head.scratch.output_conv1.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    model.set_fast_paths(channels_last=True)
    assert conv.is_contiguous(memory_format=torch.channels_last)  # the weights follow the layout
    # Reading the environment happens once, at import, never per call.
    monkeypatch.setenv("FLASHDEPTH_REFERENCE", "attention")
    assert ops.use_fast_path("attention") and ops._from_environment() == {"attention": False, "ssd": True,
                                                                           "channels_last": True}
    monkeypatch.setenv("FLASHDEPTH_REFERENCE", "sdd")
    with pytest.raises(flashdepth.UnknownNameError, match="sdd"):
        ops._from_environment()
    with pytest.raises(flashdepth.UnknownNameError, match="attn"):
        model.set_fast_paths(attn=False)


@pytest.mark.parametrize("op", ["attention", "channels_last"])
def test_each_fast_path_gives_the_reference_model_output(op):
    from flashdepth.models import FlashDepth

    from conftest import TINY, frames, randomize

    model = randomize(FlashDepth(TINY["full"]).eval(), seed=2)
    x = frames(2)
    with torch.no_grad():
        fast, fast_state = model.forward_sequence(x)
        slow, slow_state = model.set_fast_paths(**{op: False}).forward_sequence(x)
    assert model.fast_paths()[op] is False
    assert (fast - slow).norm() / slow.norm() < 1e-5
    assert all((a - b).norm() / b.norm() < 1e-5 for a, b in zip(fast_state.ssm, slow_state.ssm))


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and ssd_ops.fast_path_available(torch.device("cuda"))),
                    reason="needs CUDA and mamba_ssm")
def test_mamba_ssm_kernel_equals_reference():
    x, dt, A, B, C, D, s0 = (t.float().cuda() for t in _ssd_inputs(b=2, l=700, h=8, p=32, n=64, g=1))
    y_ref, s_ref = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=256)
    y, s = ssd_ops.ssd_scan(x, dt, A, B, C, D, s0, chunk_size=256)
    assert (y - y_ref).norm() / y_ref.norm() < 1e-4
    assert (s - s_ref).norm() / s_ref.norm() < 1e-4


def test_reference_ssd_scan_stays_fp32_inside_bf16_autocast():
    """Autocast would run the einsums in bf16 (about 3e-3 off); the scan must ignore it, over
    many chained calls too (the state carries any rounding forward)."""
    x, dt, A, B, C, D, s0 = _ssd_inputs(l=40, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_auto, s_auto = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=16)
        assert torch.is_autocast_enabled("cpu")  # the block re-enables it afterwards
    y, s = ssd_ops.ssd_scan_reference(x, dt, A, B, C, D, s0, chunk_size=16)
    assert y_auto.dtype == s_auto.dtype == torch.float32
    assert torch.equal(y_auto, y) and torch.equal(s_auto, s)
    # 50 chained frames: the carried state equals the fp32 run, and both follow the float64 recurrence
    state_auto = state = s0
    for t in range(50):
        xt, dtt, Bt, Ct = (v.roll(t, dims=1) for v in (x, dt, B, C))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, state_auto = ssd_ops.ssd_scan_reference(xt, dtt, A, Bt, Ct, D, state_auto, chunk_size=16)
        _, state = ssd_ops.ssd_scan_reference(xt, dtt, A, Bt, Ct, D, state, chunk_size=16)
    assert (state_auto - state).norm() / state.norm() < 1e-6
    # and a bf16 einsum really would have differed (the test can fail)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf16, _ = ssd_ops._ssd_scan_reference(x, dt, A, B, C, D, s0, 16)
    assert (y_bf16.float() - y).norm() / y.norm() > 1e-4
