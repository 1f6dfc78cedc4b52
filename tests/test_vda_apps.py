"""Video Depth Anything through the applications: the Python API, `flashdepth run` (with --reset-on-cut)
and `flashdepth eval --model video-depth-anything-small`, with random weights in the published layout."""

import json

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth.data.sequence import DepthSpec, SequenceWriter, write_dataset_json
from flashdepth.inference.session import DepthSession
from flashdepth.inference.weights import save_checkpoint
from flashdepth.models import VideoDepthAnything
from flashdepth_cli.main import main

from media import make_frames
from test_vda import tiny_model


@pytest.fixture(scope="module")
def published_small(tmp_path_factory):
    """A random VDA-S saved the way the official checkpoints are (a bare state dict)."""
    torch.manual_seed(0)
    model = flashdepth.create_model("video-depth-anything-small").eval()
    with torch.no_grad():
        model.head.scratch.output_conv2[2].bias.fill_(2.0)  # a live output
    path = tmp_path_factory.mktemp("vda") / "video_depth_anything_vits.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "toy"
    rng = np.random.default_rng(0)
    w = SequenceWriter(root, "toy", "walk", DepthSpec(kind="depth", unit="m"), video=True)
    for i, image in enumerate(make_frames(4, 70, 98, seed=1)):
        w.add(image, rng.uniform(1, 20, (70, 98)).astype(np.float32), source_name=f"{i}.png")
    w.close()
    write_dataset_json(root, "toy", {"test": ["walk"]})
    return root


def test_python_api_loads_the_published_layout_by_its_keys(published_small):
    model, path = published_small
    loaded = flashdepth.load_model(path)
    assert isinstance(loaded, VideoDepthAnything) and loaded.config.name == "video-depth-anything-small"
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    metric = flashdepth.load_model(path, variant="metric-video-depth-anything-small")
    assert metric.config.unit.metric
    session = DepthSession(loaded, device="cpu")
    image = make_frames(1, 70, 98, seed=2)[0]
    depth = session.predict(image)  # at the processing size
    assert session.size == (518, 728)  # the official transform: short side 518, a multiple of 14
    assert depth.shape == (518, 728) and torch.isfinite(depth).all() and depth.max() > 0


def test_eval_takes_the_row(published_small, dataset, tmp_path, capsys):
    _, path = published_small
    out = tmp_path / "scores.json"
    code = main(["eval", "--data", str(dataset), "--model", "video-depth-anything-small", "--checkpoint", str(path),
                 "--device", "cpu", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    (record,) = json.loads(out.read_text())
    assert record["model"] == "video-depth-anything-small" and record["frames"] == 4
    assert 0 <= record["delta1"] <= 1 and record["abs_rel"] > 0


def test_run_streams_and_resets_on_a_cut(tmp_path):
    """Six frames with a hard cut after the third: with --reset-on-cut the frames after the cut are
    what a fresh stream gives them."""
    from PIL import Image

    model = tiny_model(4)
    ckpt = save_checkpoint(model, tmp_path / "tiny-vda.pth")
    frames = tmp_path / "frames"
    frames.mkdir()
    first, second = make_frames(3, 56, 84, seed=3), make_frames(3, 56, 84, seed=9)
    second = [f // 4 for f in second]  # another shot: a dark one (the colour histogram jumps)
    for i, image in enumerate(first + second):
        Image.fromarray(image).save(frames / f"{i:03d}.png")
    outputs = {}
    for flag in ([], ["--reset-on-cut"]):
        out = tmp_path / f"out{len(flag)}"
        assert main(["run", str(frames), "-o", str(out), "--checkpoint", str(ckpt), "--save", "raw", "--quiet",
                     "--device", "cpu", *flag]) == 0
        outputs[bool(flag)] = np.load(out / "depth.npy")
    session = DepthSession(model, device="cpu")
    fresh = np.stack([session.predict(f).numpy() for f in second])  # 56x84: processed at its own size
    assert outputs[True].shape == (6, 56, 84)
    np.testing.assert_allclose(outputs[True][3:], fresh, rtol=1e-4, atol=1e-4)
    assert np.abs(outputs[False][3:] - fresh).max() > 1e-3  # without the reset the cache carries over
