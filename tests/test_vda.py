"""Video Depth Anything: the rows, strict loading of the published layout, the streaming state and
the window forward, on tiny configs (the official code itself: tests/test_vda_official.py)."""


import pytest
import torch

import flashdepth
from flashdepth import CheckpointError, ModelConfig, StreamStateError
from flashdepth.config import DPTConfig, MotionConfig
from flashdepth.inference.preprocess import model_processing_size
from flashdepth.inference.registry import get_spec
from flashdepth.models import VideoDepthAnything, build_model
from flashdepth.models.vda import sinusoid_table

from conftest import TINY_VIT, frames, randomize

NAMES = [f"{p}video-depth-anything-{s}" for p in ("", "metric-") for s in ("small", "base", "large")]
# widths that are multiples of the published 32 GroupNorm groups and 8 heads
TINY_VDA = ModelConfig(name="tiny-vda", vit=TINY_VIT, dpt=DPTConfig(features=32, out_channels=(16, 32, 32, 64),
                                                                    head_hidden=8),
                       motion=MotionConfig())


def tiny_model(seed: int = 0, metric: bool = False) -> VideoDepthAnything:
    config = TINY_VDA if not metric else TINY_VDA.replace(motion=MotionConfig(metric=True))
    model = randomize(build_model(config), seed=seed).eval()
    with torch.no_grad():
        model.head.scratch.output_conv2[2].bias.fill_(2.0)  # most pixels above the final ReLU
    return model


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# ------------------------------------------------------------------------------------ the rows
def test_rows_give_weights_licence_and_unit():
    for name in NAMES:
        spec, config = get_spec(name), flashdepth.get_config(name)
        size = name.rsplit("-", 1)[1]
        code = {"small": "vits", "base": "vitb", "large": "vitl"}[size]
        metric = name.startswith("metric-")
        assert spec.weights.repo_id == f"depth-anything/{'Metric-' if metric else ''}Video-Depth-Anything-{size.title()}"
        assert spec.weights.filename == f"{'metric_' if metric else ''}video_depth_anything_{code}.pth"
        assert spec.license == ("Apache-2.0" if size == "small" else "CC-BY-NC-4.0")
        assert config.unit.metric is metric and config.unit.inverse is not metric
        assert config.motion is not None and config.temporal is None and config.fusion is None


def test_the_architecture_is_chosen_by_the_config_not_the_name():
    with torch.device("meta"):
        renamed = build_model(flashdepth.get_config("video-depth-anything-small").replace(name="anything"))
        dav2 = build_model(flashdepth.get_config("depth-anything-v2-small").replace(name="video-depth-anything-x"))
    assert isinstance(renamed, VideoDepthAnything)
    assert not isinstance(dav2, VideoDepthAnything) and isinstance(dav2, flashdepth.FlashDepth)


def test_motion_config_is_checked():
    with pytest.raises(flashdepth.ConfigError, match="norm_groups"):
        TINY_VDA.replace(dpt=DPTConfig(features=16, out_channels=(16, 32, 32, 64), head_hidden=8))
    with pytest.raises(flashdepth.ConfigError, match="excludes temporal"):
        TINY_VDA.replace(temporal=flashdepth.TemporalConfig())
    from flashdepth.config import model_config_from_dict

    data = TINY_VDA.to_dict()
    data["motion"]["heads"] = 8
    with pytest.raises(flashdepth.ConfigError, match="motion.heads"):
        model_config_from_dict(data)
    assert model_config_from_dict(TINY_VDA.to_dict()) == TINY_VDA


def test_processing_size_follows_the_official_transform():
    config = flashdepth.get_config("video-depth-anything-small")
    # sizes worked by hand from the official Resize(lower_bound, multiple of 14) and its 1.78 rule
    assert model_processing_size(config, 480, 854) == (518, 924)  # 1.779: under the rule's threshold
    assert model_processing_size(config, 1080, 1920) == (518, 924)
    assert model_processing_size(config, 480, 640) == (518, 686)  # 690.7 -> 49.3 patches -> 686
    # 2.35:1 -> int(518 * 1.777 / 2.35) = 391 -> 28 patches = 392 short side; 921.2 -> 924
    assert model_processing_size(config, 480, 1128) == (392, 924)
    assert model_processing_size(config, 140, 196) == (518, 728)  # always resized (no "as it is")
    assert not config.input.clip  # cv2's bicubic on float pixels keeps its overshoot


# ------------------------------------------------------------------------------ strict loading
def test_published_layout_loads_strictly_and_names_what_is_wrong(tmp_path):
    model = tiny_model(3)
    path = tmp_path / "video_depth_anything_vits.pth"
    torch.save(model.state_dict(), path)  # a bare state dict, as the official checkpoints
    loaded = flashdepth.load_model(path, variant=TINY_VDA)
    video = frames(3, 56, 84)
    with torch.no_grad():
        assert rel(loaded.forward_window(video), model.forward_window(video)) < 1e-6
    state = model.state_dict()
    key = "head.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_v.weight"
    broken = {k: v for k, v in state.items() if k != key}
    broken["head.motion_modules.9.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"1 missing .*attention_blocks\.1\.to_v\.weight.*1 unexpected"):
        flashdepth.load_model(tmp_path / "broken.pth", variant=TINY_VDA)


def test_a_bare_small_checkpoint_is_recognised_and_metric_is_chosen_by_name(tmp_path):
    from flashdepth.inference.weights import detect_variant

    with torch.device("meta"):
        state = flashdepth.create_model("metric-video-depth-anything-base").state_dict()
    assert detect_variant(state).name == "video-depth-anything-base"  # same layout: by name or variant=
    model = tiny_model(1, metric=True)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    loaded = flashdepth.load_model(tmp_path / "m.pth", variant=model.config)
    assert loaded.config.unit.metric and isinstance(loaded, VideoDepthAnything)


def test_our_checkpoint_stores_the_motion_config(tmp_path):
    from flashdepth.inference.weights import save_checkpoint

    model = tiny_model(2, metric=True)
    loaded = flashdepth.load_model(save_checkpoint(model, tmp_path / "vda.pth"))
    assert loaded.config == model.config and loaded.config.unit.metric


# ------------------------------------------------------------------------------- streaming
def official_stream(module, inputs):
    """The official streaming cache of one motion module, restated with Python lists: frame 0
    attends to itself; its cache is copied window times; frame k attends to cache[0:2] +
    cache[-29:] and itself, positions 0..31; past frame 10 the second entry is dropped."""
    tt = module.temporal_transformer
    window, head = module.cfg.window, module.cfg.stream_head
    lists = [[] for _ in range(module.num_caches)]
    outs = []
    for index, x in enumerate(inputs):  # x (B, C, h, w)
        b, c, h, w = x.shape
        tokens = tt.proj_in(tt.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c))
        i = 0
        for block in tt.transformer_blocks:
            for attention, norm in zip(block.attention_blocks, block.norms):
                normed = norm(tokens)  # (B, N, C)
                past = lists[i][:head] + lists[i][-(window - 1 - head):] if index else []
                seq = torch.stack(past + [normed], 2)  # (B, N, L, C)
                seq = seq + attention.pos_encoder.pe[0, :seq.shape[2]]
                q = attention.to_q(seq[:, :, -1:])
                k, v = attention.to_k(seq), attention.to_v(seq)
                heads = attention.heads
                split = lambda t: t.unflatten(-1, (heads, c // heads)).transpose(2, 3)  # (B, N, h, L, d)
                weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (c // heads) ** 0.5, -1)
                out = (weights @ split(v)).transpose(2, 3).flatten(-2)[:, :, 0]  # (B, N, C)
                tokens = attention.to_out[0](out) + tokens
                if index == 0:
                    lists[i] = [normed] * window
                else:
                    lists[i].append(normed)
                if index + window > 2 * (window - module.cfg.overlap) - 1 - (module.cfg.overlap - module.cfg.interp) + 1:
                    del lists[i][1]
                i += 1
            tokens = block.ff(block.ff_norm(tokens)) + tokens
        y = tt.proj_out(tokens).reshape(b, h, w, c).permute(0, 3, 1, 2)
        outs.append(y + x)
    return outs


def test_streaming_cache_equals_the_official_queue():
    model = tiny_model(4)
    module = model.head.motion_modules[0]
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 32, 3, 4, generator=g) for _ in range(15)]  # past frame 11: the queue drops frames
    expected = official_stream(module, inputs)
    caches = [torch.zeros(2, 12, 42, 32) for _ in range(module.num_caches)]
    started = torch.zeros(2, 1)
    with torch.no_grad():
        for x, want in zip(inputs, expected):
            got, caches = module.step(x, caches, started)
            started = torch.ones(2, 1)
            assert rel(got, want) < 1e-5


def test_first_streamed_frame_equals_a_one_frame_window_and_the_state_is_bounded():
    model = tiny_model(5)
    video = frames(6, 56, 84)
    with torch.no_grad():
        first, state = model(video[:, 0], None)
        assert rel(first, model.forward_window(video[:, :1])[:, 0]) < 1e-5
        sizes = [s.shape for s in state.ssm]
        for t in range(1, 6):
            depth, state = model(video[:, t], state)
        assert [s.shape for s in state.ssm] == sizes and state.frames == 6  # flat memory
        assert rel(depth, model.forward_window(video[:, 5:6])[:, 0]) > 1e-3  # the cache matters


def test_a_clip_streams_like_its_frames_one_by_one():
    model = tiny_model(6)
    video = frames(4, 56, 84, batch=2)
    with torch.no_grad():
        clip, clip_state = model.forward_sequence(video)
        state = None
        for t in range(4):
            depth, state = model(video[:, t], state)
            assert rel(depth, clip[:, t]) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(state.ssm, clip_state.ssm))


def test_window_forward_mixes_frames_and_is_batched_per_clip():
    model = tiny_model(7)
    video = frames(5, 56, 84, batch=2)
    with torch.no_grad():
        both = model.forward_window(video)
        one = model.forward_window(video[1:])
        changed = video.clone()
        changed[:, 4] = torch.randn_like(changed[:, 4])
        moved = model.forward_window(changed)
    assert both.shape == (2, 5, 56, 84) and rel(both[1:], one) < 1e-5
    assert rel(moved[:, 0], both[:, 0]) > 1e-4  # frame 0 sees frame 4
    with pytest.raises(flashdepth.InputShapeError, match="at most 32"):
        model.forward_window(frames(33, 14, 14))


def test_a_state_from_another_size_or_model_is_refused():
    model = tiny_model(8)
    with torch.no_grad():
        _, state = model(frames(1, 56, 84)[:, 0], None)
        with pytest.raises(StreamStateError, match="another frame size"):
            model(frames(1, 70, 84)[:, 0], state)
        flash = flashdepth.create_model(flashdepth.get_config("flashdepth-tiny-synthetic")).eval()
        _, other = flash(frames(1, 126, 224)[:, 0], None)
        with pytest.raises(StreamStateError, match="another model"):
            model(frames(1, 56, 84)[:, 0], other)


def test_position_table_is_the_sinusoid_of_the_checkpoints():
    table = sinusoid_table(32, 64)
    assert torch.allclose(table[0, 3, 0::2], torch.sin(3 * 10000 ** (-torch.arange(0, 64, 2) / 64)), atol=1e-6)
    assert torch.allclose(table[0, 3, 1::2], torch.cos(3 * 10000 ** (-torch.arange(0, 64, 2) / 64)), atol=1e-6)
    names = dict(tiny_model().named_buffers())
    assert all(k.endswith("pos_encoder.pe") for k in names) and len(names) == 8


def test_source_is_told_by_the_keys_and_named_in_errors(tmp_path):
    from flashdepth.inference.weights import checkpoint_source

    model = tiny_model(9)
    state = model.state_dict()
    assert checkpoint_source(state) == "Video Depth Anything"
    assert checkpoint_source(flashdepth.create_model(flashdepth.get_config("flashdepth-tiny-synthetic")).state_dict()) \
        == "FlashDepth"
    torch.save(state, tmp_path / "tiny.pth")  # a layout no row has
    with pytest.raises(CheckpointError, match="Video Depth Anything weights match no registered model"):
        flashdepth.load_model(tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match="unrecognised Video Depth Anything weights"):
        flashdepth.load_model(tmp_path / "tiny.pth", variant="flashdepth-tiny-synthetic")


def test_resizing_keeps_the_bicubic_overshoot_as_the_official_transform():
    from flashdepth.inference.preprocess import normalise

    edge = torch.zeros(3, 40, 60)
    edge[:, :, 30:] = 1.0  # a hard edge: bicubic overshoots on both sides of it
    vda = flashdepth.get_config("video-depth-anything-small").input
    dav2 = flashdepth.get_config("depth-anything-v2-small").input
    mean, std = torch.tensor(vda.mean).view(3, 1, 1), torch.tensor(vda.std).view(3, 1, 1)
    kept = normalise(edge, (70, 98), vda)[0] * std + mean  # back to [0, 1] pixel values
    clipped = normalise(edge, (70, 98), dav2)[0] * std + mean
    assert kept.min() < -0.01 and kept.max() > 1.01
    assert clipped.min() > -1e-6 and clipped.max() < 1 + 1e-6
