"""The parameter layout of every registered variant equals the published checkpoints'."""

import json
from pathlib import Path

import pytest
import torch

import flashdepth

MANIFESTS = Path(__file__).parent / "data" / "manifests"
VARIANTS = {
    "flashdepth": "flashdepth",
    "flashdepth-l": "flashdepth-l",
    "flashdepth-s": "flashdepth-s",
    "depth-anything-v2-small": "dav2-vits",
    "depth-anything-v2-base": "dav2-vitb",
    "depth-anything-v2-large": "dav2-vitl",
    # The metric models keep the relative models' layout: only the head's last activation differs.
    **{f"depth-anything-v2-metric-{scene}-{size}": f"dav2-vit{size[0]}" for scene in ("indoor", "outdoor")
       for size in ("small", "base", "large")},
    # Video Depth Anything: the metric checkpoints have the relative ones' layout (the same network).
    **{f"{prefix}video-depth-anything-{size}": f"vda-vit{size[0]}" for prefix in ("", "metric-")
       for size in ("small", "base", "large")},
}


#: registered models of our own, with no published counterpart (their weights ship in the package)
OURS = ("flashdepth-tiny-synthetic",)


def test_registry_lists_every_variant():
    assert flashdepth.list_models() == list(VARIANTS) + list(OURS)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_dict_layout_equals_manifest(name):
    manifest = json.loads((MANIFESTS / f"manifest_{VARIANTS[name]}.json").read_text())
    with torch.device("meta"):
        model = flashdepth.create_model(name)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    published = [(t["key"], t["shape"]) for t in manifest["tensors"]]
    assert ours == published  # same keys, same shapes, same order
    assert sum(v.numel() for v in model.state_dict().values()) == manifest["num_elements"]


def test_full_teacher_is_dav2_large_layout():
    with torch.device("meta"):
        full = flashdepth.create_model("flashdepth").state_dict()
        large = flashdepth.create_model("depth-anything-v2-large").state_dict()
    teacher = {k[len("teacher_model."):]: v.shape for k, v in full.items() if k.startswith("teacher_model.")}
    assert teacher == {k: v.shape for k, v in large.items()}


def test_config_round_trips_and_rejects_unknown_keys():
    from flashdepth.config import model_config_from_dict

    for name in VARIANTS:
        config = flashdepth.get_config(name)
        assert model_config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    data = flashdepth.get_config("flashdepth").to_dict()
    data["temporal"]["mamba_d_state"] = 256
    with pytest.raises(flashdepth.ConfigError, match="temporal.mamba_d_state"):
        model_config_from_dict(data)
    data = flashdepth.get_config("flashdepth-s").to_dict()
    data["vit"]["depth"] = "12"
    with pytest.raises(flashdepth.ConfigError, match="vit.depth"):
        model_config_from_dict(data)


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(flashdepth.UnknownModelError, match="flashdepth-s"):
        flashdepth.get_config("flashdepth-xl")
