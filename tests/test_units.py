"""Output units are part of a model's row: relative inverse depth or metric depth in metres."""

import torch

import flashdepth
from flashdepth.config import UNITS
from flashdepth.inference.registry import get_config, get_spec, list_models

from conftest import TINY, randomize


def test_every_model_row_declares_its_unit_and_metric_rows_are_metres():
    for name in list_models():
        unit = get_config(name).unit
        assert unit is UNITS[unit.name]
        assert unit.metric == ("metric" in name), name  # the published metric models, and only they
    cap = {"indoor": 20.0, "outdoor": 80.0}
    for scene in cap:
        for size in ("small", "base", "large"):
            spec = get_spec(f"depth-anything-v2-metric-{scene}-{size}")
            assert spec.config.dpt.max_depth == cap[scene]
            assert spec.license == ("Apache-2.0" if size == "small" else "CC-BY-NC-4.0")
    assert UNITS["metric-depth"].inverse is False and UNITS["relative-inverse-depth"].inverse is True


def test_a_metric_head_gives_metres_within_its_cap_and_loads_the_relative_layout():
    relative = TINY["dav2"]
    metric = relative.replace(name="tiny-metric", dpt=relative.dpt.__class__(**{**relative.dpt.__dict__,
                                                                               "max_depth": 10.0}))
    a = randomize(flashdepth.FlashDepth(relative), seed=1).eval()
    b = flashdepth.FlashDepth(metric).eval()
    b.load_state_dict(a.state_dict(), strict=True)  # same keys and shapes: only the activation differs
    x = torch.randn(1, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        depth, _ = b(x)  # (1, H, W)
        head = b.depth_head.scratch.output_conv2
        assert isinstance(head[-1], torch.nn.Sigmoid)
    assert torch.all(depth > 0) and torch.all(depth < 10.0)
    assert metric.unit.name == "metric-depth" and relative.unit.name == "relative-inverse-depth"
