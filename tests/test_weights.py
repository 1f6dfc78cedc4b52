"""The weight loader: published layouts load strictly and give the same function; bad files fail cleanly."""

import dataclasses
import os
import pickle

import pytest
import torch

import flashdepth
from flashdepth import CheckpointError, FlashDepth, WeightsNotFoundError
from flashdepth.inference.weights import detect_variant, model_from_checkpoint, read_checkpoint, save_checkpoint

from conftest import TINY, frames, randomize


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def published_s(tmp_path_factory):
    """A random FlashDepth-S in the published checkpoint format (saved from a DDP-wrapped model)."""
    model = randomize(flashdepth.create_model("flashdepth-s"), seed=7).eval()
    path = tmp_path_factory.mktemp("ckpt") / "iter_14001.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "step": 14001}, path)
    return model, path


def test_published_flashdepth_checkpoint_round_trips(published_s):
    model, path = published_s
    loaded = flashdepth.load_model(str(path))
    assert loaded.config.name == "flashdepth-s" and not loaded.training
    video = frames(3, 70, 98)
    with torch.no_grad():
        state = loaded_state = None
        for t in range(3):
            expected, state = model(video[:, t], state)
            got, loaded_state = loaded(video[:, t], loaded_state)
            assert expected.norm() > 0 and torch.equal(got, expected)


def test_truncated_checkpoint_is_a_one_line_error(published_s, tmp_path):
    _, path = published_s
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        flashdepth.load_model(cut)
    assert "\n" not in str(err.value)


def test_depth_anything_checkpoint_detected_and_turned_into_flashdepth_s(tmp_path):
    dav2 = randomize(flashdepth.create_model("depth-anything-v2-small"), seed=7).eval()
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(dav2.state_dict(), path)  # bare state dict, as published
    assert flashdepth.load_model(path).config.name == "depth-anything-v2-small"
    student = flashdepth.load_model(path, variant="flashdepth-s")  # temporal module at its zero init
    video = frames(2, 70, 98)
    with torch.no_grad():
        ours, _ = student.forward_sequence(video)
        single = torch.stack([dav2(video[:, t])[0] for t in range(2)], 1)
    assert single.norm() > 0 and rel(ours, single) < 1e-5


def test_our_checkpoints_store_their_config(tmp_path):
    model = randomize(FlashDepth(TINY["full"])).eval()
    video = frames(2)
    with torch.no_grad():
        expected, _ = model.forward_sequence(video)
    for name in ("ours.pth", "ours.safetensors"):
        path = save_checkpoint(model, tmp_path / name)
        loaded = flashdepth.load_model(path)
        assert loaded.config == model.config
        with torch.no_grad():
            assert torch.equal(loaded.forward_sequence(video)[0], expected)


def test_compiled_prefix_is_stripped(tmp_path):
    model = randomize(FlashDepth(TINY["s"]))
    path = save_checkpoint(model, tmp_path / "m.pth")
    raw = torch.load(path, weights_only=True)
    raw["model"] = {f"module._orig_mod.{k}": v for k, v in raw["model"].items()}
    torch.save(raw, path)
    state, _ = read_checkpoint(path)
    assert set(state) == set(model.state_dict())


def test_mismatch_names_missing_unexpected_and_shapes(tmp_path):
    model = flashdepth.create_model("depth-anything-v2-small")
    state = model.state_dict()
    del state["depth_head.scratch.output_conv1.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["pretrained.norm.weight"] = torch.zeros(7)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        model_from_checkpoint(path, "depth-anything-v2-small")
    message = str(err.value)
    assert "1 missing (depth_head.scratch.output_conv1.bias)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "pretrained.norm.weight: checkpoint (7,) vs model (384,)" in message
    assert "\n" not in message


def test_wrong_variant_is_refused_with_key_names(published_s):
    _, path = published_s
    with pytest.raises(CheckpointError, match="does not fit depth-anything-v2-small: .*unexpected .*mamba"):
        flashdepth.load_model(path, variant="depth-anything-v2-small")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"model": _Exploit(marker)}))
    with pytest.raises(CheckpointError, match="could run code") as err:
        flashdepth.load_model(path)
    assert not marker.exists() and "\n" not in str(err.value)
    torch.save({"model": _Exploit(marker)}, path)  # the same inside a torch zip archive
    with pytest.raises(CheckpointError, match="could run code"):
        flashdepth.load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"hello, this is text\n", b"", b"PK\x03\x04garbage"])
def test_non_checkpoints_give_one_line_errors(tmp_path, content):
    path = tmp_path / "notes.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        flashdepth.load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_other_objects_and_missing_files(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        flashdepth.load_model(path)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        flashdepth.load_model(tmp_path / "nope.pth")
    bad_st = tmp_path / "x.safetensors"
    bad_st.write_bytes(b"\x00\x01not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        flashdepth.load_model(bad_st)


def test_detection_of_every_published_layout_on_meta():
    for name in flashdepth.list_models():
        with torch.device("meta"):
            state = flashdepth.create_model(name).state_dict()
        config = flashdepth.get_config(name)
        if config.motion is not None and config.motion.metric:
            # The same for Video Depth Anything's metric models (docs/vda.md).
            config = config.replace(name=name.removeprefix("metric-"),
                                    motion=dataclasses.replace(config.motion, metric=False))
        elif config.unit.metric:
            # The metric models have the relative models' keys and shapes (only the head's last,
            # parameter-free activation differs): a file alone loads as the relative model, and a
            # metric checkpoint is loaded by name or with variant= (docs/metric.md).
            config = config.replace(name=name.replace("-metric-indoor", "").replace("-metric-outdoor", ""),
                                    dpt=dataclasses.replace(config.dpt, max_depth=0.0))
        assert detect_variant(state) == config
