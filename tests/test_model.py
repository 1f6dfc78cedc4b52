"""Model invariants on tiny configurations, with random non-zero weights everywhere."""


import dataclasses

import pytest
import torch
import torch.nn.functional as F

import flashdepth
from flashdepth import FlashDepth, InputShapeError, StreamStateError
from flashdepth.models.temporal import Mamba2

from conftest import TINY, TINY_TEMPORAL_S, frames, randomize


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def stream(model, video):
    """video: (B, T, 3, H, W) -> (B, T, H, W) depth streamed frame by frame, and the last state."""
    state, steps = None, []
    for t in range(video.shape[1]):
        depth, state = model(video[:, t], state)
        steps.append(depth)
    return torch.stack(steps, 1), state


@pytest.mark.parametrize("kind", ["s", "l", "full"])
def test_streaming_step_equals_training_unroll(kind):
    model = randomize(FlashDepth(TINY[kind])).eval()
    video = frames(5)
    with torch.no_grad():
        unrolled, final = model.forward_sequence(video)
        streamed, state = stream(model, video)
    assert rel(streamed, unrolled) < 1e-5
    assert state.frames == final.frames == 5
    for a, b in zip(state.ssm, final.ssm):
        assert rel(a, b) < 1e-5


@pytest.mark.parametrize("kind", ["s", "l", "full"])
def test_state_carries_information_between_frames(kind):
    model = randomize(FlashDepth(TINY[kind])).eval()
    video = frames(2)
    with torch.no_grad():
        _, state = model(video[:, 0])
        carried, _ = model(video[:, 1], state)
        fresh, _ = model(video[:, 1])
    assert rel(carried, fresh) > 1e-3


def test_a_freshly_built_model_starts_with_every_pixel_alive():
    # Training from scratch starts here: a pixel below the final ReLU outputs 0 and passes no
    # gradient, and with a zero-mean last bias whole seeds came out at 0 everywhere (dead for good).
    for seed in range(8):
        torch.manual_seed(seed)
        model = FlashDepth(TINY["s"])
        depth, _ = model(frames(1, seed=seed)[:, 0])  # (1, H, W)
        assert (depth > 0).all(), f"seed {seed}: {(depth <= 0).float().mean():.0%} of pixels dead"
        depth.mean().backward()
        assert model.pretrained.patch_embed.proj.weight.grad.abs().sum() > 0
        assert model.depth_head.scratch.output_conv1.weight.grad.abs().sum() > 0


def test_zero_initialised_temporal_and_fusion_leave_the_single_image_output():
    # The published init zeroes final_layer (temporal) and proj/mlp[-1] (fusion): identities.
    for kind in ("s", "l", "full"):
        model = randomize(FlashDepth(TINY[kind])).eval()
        model.mamba.zero_init_output()
        if kind == "full":
            model.hybrid_fusion.zero_init_output()
        dav2 = FlashDepth(TINY["dav2"]).eval()
        dav2.load_state_dict({k: v for k, v in model.state_dict().items() if k in dav2.state_dict()})
        video = frames(3)
        with torch.no_grad():
            ours, _ = model.forward_sequence(video)
            single = torch.stack([dav2(video[:, t])[0] for t in range(3)], 1)
        assert rel(ours, single) < 1e-5
        # ... and with trained (non-zero) output layers it really is not the identity.
        randomize(model.mamba, seed=5)
        with torch.no_grad():
            assert rel(model.forward_sequence(video)[0], single) > 1e-3


def test_streams_in_a_batch_are_independent():
    model = randomize(FlashDepth(TINY["s"])).eval()
    a, b = frames(3, seed=1), frames(3, seed=2)
    with torch.no_grad():
        both, _ = model.forward_sequence(torch.cat([a, b]))
        only_a, _ = model.forward_sequence(a)
        only_b, _ = model.forward_sequence(b)
    assert rel(both[0], only_a[0]) < 1e-5 and rel(both[1], only_b[0]) < 1e-5


def _naive_mamba2(mixer: Mamba2, frames_tokens):
    """Mamba2 per the published semantics, written token by token (independent of the model code)."""
    d_inner, n, h, p = mixer.d_inner, mixer.d_state, mixer.nheads, mixer.headdim
    w = mixer.conv1d.weight[:, 0]  # (conv_dim, K)
    k = w.shape[1]
    A = -torch.exp(mixer.A_log.double())
    state = torch.zeros(h, p, n, dtype=torch.float64)
    outputs = []
    for u in frames_tokens:  # u: (L, d_model), one frame; the conv history restarts at zero each frame
        zxbcdt = u.double() @ mixer.in_proj.weight.double().T
        z, xbc, dt = zxbcdt[:, :d_inner], zxbcdt[:, d_inner:-h], zxbcdt[:, -h:]
        conv = torch.zeros_like(xbc)
        for t in range(u.shape[0]):
            for j in range(k):  # output t sees inputs t-k+1 .. t
                src = t - (k - 1) + j
                if src >= 0:
                    conv[t] += w[:, j].double() * xbc[src]
        conv = F.silu(conv + mixer.conv1d.bias.double())
        x, B, C = conv[:, :d_inner], conv[:, d_inner:d_inner + n], conv[:, d_inner + n:]
        dts = F.softplus(dt + mixer.dt_bias.double())
        ys = []
        for t in range(u.shape[0]):
            xt = x[t].reshape(h, p)
            state = torch.exp(dts[t] * A)[:, None, None] * state + dts[t][:, None, None] * xt[:, :, None] * B[t][None, None, :]
            ys.append((state @ C[t]) + mixer.D.double()[:, None] * xt)
        y = torch.stack(ys).reshape(-1, d_inner)
        g = y * F.silu(z)
        g = g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5) * mixer.norm.weight.double()
        outputs.append(g @ mixer.out_proj.weight.double().T)
    return torch.stack(outputs)


def test_mamba2_mixer_matches_token_by_token_semantics():
    mixer = randomize(Mamba2(16, TINY_TEMPORAL_S), seed=3)
    u = torch.randn(1, 3, 21, 16, generator=torch.Generator().manual_seed(4))  # 3 frames of 21 tokens
    with torch.no_grad():
        ours, _ = mixer(u, None)
        expected = _naive_mamba2(mixer, u[0])
    assert rel(ours[0].double(), expected) < 1e-5


def test_pos_embed_uses_scale_factor_resampling():
    model = randomize(FlashDepth(flashdepth.get_config("depth-anything-v2-small").replace(name="s"))).pretrained
    stored = model.pos_embed
    assert model.interpolated_pos_embed(37, 37, 518, 518) is stored  # exactly 518x518: used as is
    out = model.interpolated_pos_embed(37, 38, 518, 532)
    grid = stored[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, scale_factor=(37.1 / 37, 38.1 / 37), mode="bicubic", antialias=False)
    assert torch.allclose(out[0, 1:], expected.permute(0, 2, 3, 1).reshape(-1, stored.shape[-1]))
    sized = F.interpolate(grid, size=(37, 38), mode="bicubic", antialias=False)
    assert rel(out[0, 1:], sized.permute(0, 2, 3, 1).reshape(-1, stored.shape[-1])) > 0.05
    # 518x524 is also a 37x37 grid but not square in pixels: resampled, not the stored embedding
    assert not torch.equal(model.interpolated_pos_embed(37, 37, 518, 524), stored)


@pytest.mark.parametrize("hw,pooled", [((74, 74), (7, 7)), ((76, 136), (7, 13)), ((160, 288), (16, 28))])
def test_temporal_pooling_grid(hw, pooled):
    from flashdepth.models.temporal import TemporalModule

    assert TemporalModule(16, TINY_TEMPORAL_S.__class__(headdim=8, expand=2)).pooled_size(*hw) == pooled


def test_teacher_resize_rule():
    model = FlashDepth(TINY["full"])
    teacher = model.teacher_model
    teacher.resolution = 490
    assert teacher.resize(torch.zeros(1, 3, 532, 952)).shape[-2:] == (490, 868)
    x = torch.zeros(1, 3, 420, 952)
    assert teacher.resize(x) is x


def test_bad_inputs_give_specific_errors():
    model = FlashDepth(TINY["s"]).eval()
    with pytest.raises(InputShapeError, match="multiple of the 14-pixel patch"):
        model(torch.zeros(1, 3, 141, 196))
    with pytest.raises(InputShapeError, match="3 colour channels"):
        model(torch.zeros(1, 4, 140, 196))
    with pytest.raises(InputShapeError, match="frame batch"):
        model(torch.zeros(3, 140, 196))
    with pytest.raises(InputShapeError, match="too small"):
        model(torch.zeros(1, 3, 14, 14))
    _, state = model(torch.zeros(2, 3, 140, 196))
    with pytest.raises(StreamStateError, match="2 stream"):
        model(torch.zeros(1, 3, 140, 196), state)
    with pytest.raises(StreamStateError, match="per-frame model"):
        FlashDepth(TINY["dav2"])(torch.zeros(1, 3, 140, 196), state)


def test_gradients_flow_with_checkpointing():
    model = randomize(FlashDepth(TINY["s"]))
    model.set_grad_checkpointing(True)
    depth, _ = model.forward_sequence(frames(2))
    depth.mean().backward()
    assert model.mamba.blocks[0][0].mamba.A_log.grad is not None
    assert model.pretrained.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_published_sizes_run_on_cpu():
    # FlashDepth-S at the smallest size its temporal pooling allows (a 5x5 patch grid).
    model = flashdepth.create_model("flashdepth-s").eval()
    assert model.min_input_size() == 70
    with torch.no_grad():
        depth, state = model(torch.randn(1, 3, 70, 98))
    assert depth.shape == (1, 70, 98) and state.ssm[0].shape == (1, 8, 32, 256)


def test_portable_adaptive_pool_matches_pytorch_bins():
    from flashdepth.models.temporal import pool_by_bins

    for size, out in (((74, 136), (7, 13)), ((160, 288), (16, 28)), ((20, 28), (5, 7))):
        x = torch.randn(2, 3, *size, dtype=torch.float64)
        assert torch.allclose(pool_by_bins(x, out), F.adaptive_avg_pool2d(x, out), atol=1e-12)


def test_the_python_api_gives_the_package_errors_with_the_value_and_the_fix():
    import numpy as np

    from flashdepth.errors import InputValueError

    model = FlashDepth(TINY["s"]).eval()
    good = torch.zeros(1, 3, 140, 196)
    for dtype in (torch.uint8, torch.int32, torch.int64, torch.bool):
        with pytest.raises(InputValueError, match=f"float frame tensor.*{dtype}.*to_float_rgb"):
            model(good.to(dtype))
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(InputValueError, match=rf"frame dtype {dtype} does not match.*frame.to\(torch.float32\)"):
            model(good.to(dtype))
    with pytest.raises(InputShapeError, match=r"holds no frame \(batch 0"):
        model(torch.zeros(0, 3, 140, 196))
    with pytest.raises(InputValueError, match="got ndarray; convert it with torch.from_numpy"):
        model(np.zeros((1, 3, 140, 196), np.float32))
    for value in ([[0.0]], None):
        with pytest.raises(InputValueError, match=f"got {type(value).__name__}; pass a torch.Tensor"):
            model(value)
    with pytest.raises(InputValueError, match="float tensor, got NoneType"):
        model.forward_sequence(None)
    # every one of these is the package's error class, catchable as such
    assert issubclass(InputValueError, flashdepth.FlashDepthError)


def test_a_foreign_or_reshaped_state_is_named_as_such():
    from flashdepth import StreamState

    model = FlashDepth(TINY["s"]).eval()
    x = torch.zeros(1, 3, 140, 196)
    _, state = model(x)
    h, p, n = state.ssm[0].shape[1:]
    flat = StreamState(tuple(s[0] for s in state.ssm), state.frames)  # 3-D: (H, P, N)
    with pytest.raises(StreamStateError, match=rf"state 0 has shape \({h}, {p}, {n}\) but tiny-s carries \(B, {h}, {p}, {n}\)"):
        model(x, flat)
    with pytest.raises(StreamStateError, match="got tuple"):
        model(x, state.ssm)
    other = FlashDepth(TINY["s"].replace(temporal=TINY_TEMPORAL_S.__class__(
        dpt_layer=1, num_blocks=2, downsample=0.25, d_state=4, expand=2, headdim=8, chunk_size=16))).eval()
    _, foreign = other(x)
    with pytest.raises(StreamStateError, match="it belongs to another model"):
        model(x, foreign)
    _, large = FlashDepth(TINY["l"].replace(temporal=TINY["l"].temporal.__class__(num_blocks=3, d_state=8, expand=2,
                                                                                  headdim=8))).eval()(x)
    with pytest.raises(StreamStateError, match="holds 3 SSM state"):
        model(x, large)
    half = StreamState(tuple(s.half() for s in state.ssm), state.frames)
    with pytest.raises(StreamStateError, match="is torch.float16 but states are float32"):
        model(x, half)


def test_weights_cast_once_keep_norms_and_state_fp32_and_match_autocast():
    import torch.nn as nn

    from flashdepth.models.flashdepth import LOW_PRECISION_LAYERS

    reference = randomize(FlashDepth(TINY["full"])).eval().requires_grad_(False)
    cast = randomize(FlashDepth(TINY["full"])).eval().requires_grad_(False).cast_for_inference(torch.bfloat16)
    for name, module in cast.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            wanted = torch.bfloat16 if isinstance(module, LOW_PRECISION_LAYERS) else torch.float32
            assert p.dtype == wanted, f"{name}.{pname} is {p.dtype}"
    assert isinstance(cast.pretrained.norm, nn.LayerNorm) and cast.pretrained.norm.weight.dtype == torch.float32
    assert cast.mamba.blocks[0][0].mamba.A_log.dtype == torch.float32
    video = frames(4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        s1 = s2 = None
        for t in range(4):
            a, s1 = reference(video[:, t], s1)  # autocast casting fp32 weights every call
            b, s2 = cast(video[:, t], s2)
            assert all(s.dtype == torch.float32 for s in s2.ssm)
            # the same weights rounded the same way: equal up to summation order
            assert rel(b.float(), a.float()) < 1e-5
            assert max(rel(x, y) for x, y in zip(s2.ssm, s1.ssm)) < 1e-5
    with torch.inference_mode():
        fp32, _ = reference(video[:, 0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            first, _ = cast(video[:, 0])
    assert rel(first.float(), fp32) > 1e-3  # bf16 really ran (the comparison above can fail)
    with pytest.raises(flashdepth.ConfigError, match="frozen models"):
        randomize(FlashDepth(TINY["s"])).cast_for_inference(torch.bfloat16)


def test_sessions_cast_frozen_models_only_and_set_tf32_once():
    from flashdepth.device import configure_float32
    from flashdepth.inference.session import DepthSession

    frozen = randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False)
    DepthSession(frozen, device="cpu", precision="bf16")
    assert frozen.weights_dtype() == torch.bfloat16 and frozen.pretrained.norm.weight.dtype == torch.float32
    with pytest.raises(flashdepth.ConfigError, match="needs float32 weights.*load the model again"):
        DepthSession(frozen, device="cpu", precision="fp32")
    with pytest.raises(flashdepth.ConfigError, match="cast to torch.bfloat16"):
        DepthSession(frozen, device="cpu", precision="fp16")
    training = randomize(FlashDepth(TINY["s"]))  # requires grad: a model being trained is left alone
    DepthSession(training, device="cpu", precision="bf16")
    assert training.weights_dtype() == torch.float32
    DepthSession(training.requires_grad_(False), device="cpu", precision="bf16", cast_weights=False)
    assert training.weights_dtype() == torch.float32

    # TF32: set for CUDA only, from the precision (flags restored after)
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision)
    try:
        configure_float32(torch.device("cpu"), "tf32")
        assert (matmul.fp32_precision, conv.fp32_precision) == saved
        configure_float32(torch.device("cuda", 1), "fp32")
        assert matmul.fp32_precision == conv.fp32_precision == "ieee"
        configure_float32(torch.device("cuda"), "tf32")
        assert matmul.fp32_precision == conv.fp32_precision == "tf32"
        configure_float32(torch.device("cuda"), "bf16")  # fp32 ops outside autocast stay IEEE
        assert matmul.fp32_precision == conv.fp32_precision == "ieee"
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def _conv_stem(config):
    return dataclasses.replace(config, vit=dataclasses.replace(config.vit, stem="conv"))


def test_conv_stem_sees_across_patch_borders_and_the_patch_stem_does_not():
    """The oracle is the stems' geometry: a pixel on a patch's border reaches the neighbouring
    patch's token only through the conv stem's 3x3 kernels; a pixel mid-patch reaches one token."""
    from flashdepth.config import ViTConfig
    from flashdepth.models.vit import VisionTransformer

    torch.manual_seed(0)
    p = 14
    base = ViTConfig(embed_dim=32, depth=1, num_heads=2, pos_grid=4, layer_indices=(0, 0, 0, 0))
    x = torch.randn(1, 3, 2 * p, 2 * p)  # a 2 x 2 patch grid
    for stem, border_reaches in (("patch", {0}), ("conv", {0, 1})):
        embed = VisionTransformer(dataclasses.replace(base, stem=stem)).patch_embed
        tokens = embed(x)  # (1, 4, 32)
        for col, reached in ((p // 2, {0}), (p - 1, border_reaches)):  # mid-patch, last column of patch 0
            y = x.clone()
            y[..., p // 2, col] += 1.0
            changed = ((embed(y) - tokens).abs().amax(-1)[0] > 0).nonzero().flatten().tolist()
            assert set(changed) == reached, (stem, col, changed)


def test_conv_stem_models_stream_save_and_load(tmp_path):
    from flashdepth.inference.weights import save_checkpoint

    model = randomize(FlashDepth(_conv_stem(TINY["s"]))).eval()
    keys = [k for k in model.state_dict() if k.startswith("pretrained.patch_embed.")]
    assert "pretrained.patch_embed.stem.0.weight" in keys and "pretrained.patch_embed.proj.weight" in keys
    video = frames(3)
    with torch.no_grad():
        unrolled, _ = model.forward_sequence(video)
        assert rel(stream(model, video)[0], unrolled) < 1e-5
        loaded = flashdepth.load_model(str(save_checkpoint(model, tmp_path / "conv.pth")))
        assert loaded.config.vit.stem == "conv"
        assert torch.equal(loaded.forward_sequence(video)[0], unrolled)
    # the published layout has no stem parameters: a default model's keys are unchanged
    assert not any(".patch_embed.stem" in k for k in FlashDepth(TINY["s"]).state_dict())


def test_stem_errors_name_the_value_and_the_choices():
    from flashdepth import ConfigError
    from flashdepth.config import ViTConfig

    with pytest.raises(ConfigError, match=r"vit.stem='cnn'.*patch.*conv"):
        ViTConfig(stem="cnn").validate()
    with pytest.raises(ConfigError, match="patch_size=7 must be even"):
        ViTConfig(stem="conv", patch_size=7, pos_grid=4).validate()
