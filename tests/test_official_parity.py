"""Parity with the official Depth Anything V2 code (ViT encoder, pos-embed resampling, DPT).

The official modules come from PyPI (`pip install --no-deps jkp-depth-anything-v2==0.1.1`, a
packaging of DepthAnything/Depth-Anything-V2; `.ci/run` installs it). They import cv2 and
torchvision only for their image transforms, so the comparison runs in a subprocess with those
two stubbed. Skipped when the package is not installed.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

SCRIPT = r"""
import json, sys, types, importlib.util
cv2 = types.ModuleType("cv2"); cv2.INTER_AREA = 3; cv2.INTER_CUBIC = 2; sys.modules["cv2"] = cv2
tv = types.ModuleType("torchvision"); tvt = types.ModuleType("torchvision.transforms"); tvt.Compose = object
tv.transforms = tvt; sys.modules["torchvision"] = tv; sys.modules["torchvision.transforms"] = tvt
import torch
from depth_anything_v2.dpt import DepthAnythingV2
import flashdepth
from conftest import randomize
out = {}
for name, kw in [("depth-anything-v2-small", dict(encoder="vits", features=64, out_channels=[48, 96, 192, 384])),
                 ("depth-anything-v2-base", dict(encoder="vitb", features=128, out_channels=[96, 192, 384, 768]))]:
    ours = randomize(flashdepth.create_model(name), seed=3).eval()
    with torch.no_grad():
        ours.depth_head.scratch.output_conv2[2].bias.fill_(3.0)  # a live output, so the comparison means something
    ref = DepthAnythingV2(**kw).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    for hw in [(518, 518), (518, 532), (280, 504), (140, 196)]:
        x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0] + hw[1]))
        with torch.no_grad():
            a = ref(x)
            b, _ = ours(x)
        out[f"{name} {hw[0]}x{hw[1]}"] = [((a - b).norm() / a.norm()).item(), a.norm().item()]
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("depth_anything_v2") is None,
                    reason="official Depth Anything V2 code not installed (pip install --no-deps jkp-depth-anything-v2)")
def test_depth_anything_v2_equals_the_official_code():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "PYTHONPATH": str(HERE)})
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(errors) == 8
    for case, (rel, norm) in errors.items():
        assert norm > 1.0, case  # a non-trivial output
        assert rel < 1e-5, f"{case}: relative L2 {rel:.2e}"


METRIC_SCRIPT = r"""
import json, sys, types
cv2 = types.ModuleType("cv2"); cv2.INTER_AREA = 3; cv2.INTER_CUBIC = 2; sys.modules["cv2"] = cv2
tv = types.ModuleType("torchvision"); tvt = types.ModuleType("torchvision.transforms"); tvt.Compose = object
tv.transforms = tvt; sys.modules["torchvision"] = tv; sys.modules["torchvision.transforms"] = tvt
import torch
from torch import nn
from depth_anything_v2.dpt import DepthAnythingV2
import flashdepth
from conftest import randomize

def official_metric(ref, max_depth):
    # The official metric_depth/depth_anything_v2/dpt.py differs from the relative model in three
    # places only: output_conv2 ends in nn.Sigmoid() (no trailing Identity), the head's output is
    # multiplied by max_depth, and no final ReLU is applied. Applied here to the official modules.
    conv = ref.depth_head.scratch.output_conv2
    ref.depth_head.scratch.output_conv2 = nn.Sequential(conv[0], conv[1], conv[2], nn.Sigmoid())
    def forward(x):
        ph, pw = x.shape[-2] // 14, x.shape[-1] // 14
        feats = ref.pretrained.get_intermediate_layers(x, ref.intermediate_layer_idx[ref.encoder],
                                                       return_class_token=True)
        return (ref.depth_head(feats, ph, pw) * max_depth).squeeze(1)
    return forward

out = {}
for name, kw, cap in [("depth-anything-v2-metric-indoor-small", dict(encoder="vits", features=64, out_channels=[48, 96, 192, 384]), 20.0),
                      ("depth-anything-v2-metric-outdoor-base", dict(encoder="vitb", features=128, out_channels=[96, 192, 384, 768]), 80.0)]:
    ours = randomize(flashdepth.create_model(name), seed=3).eval()
    ref = DepthAnythingV2(**kw).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # the same published layout as the relative model
    run = official_metric(ref, cap)
    for hw in [(518, 532), (280, 504)]:
        x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0] + hw[1]))
        with torch.no_grad():
            a = run(x)
            b, _ = ours(x)
        out[f"{name} {hw[0]}x{hw[1]}"] = [((a - b).norm() / a.norm()).item(), a.min().item(), a.max().item()]
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("depth_anything_v2") is None,
                    reason="official Depth Anything V2 code not installed (pip install --no-deps jkp-depth-anything-v2)")
def test_depth_anything_v2_metric_heads_equal_the_official_code():
    """The metric models (Hypersim indoor, 20 m; Virtual KITTI outdoor, 80 m): metres in (0, cap)."""
    result = subprocess.run([sys.executable, "-c", METRIC_SCRIPT], capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "PYTHONPATH": str(HERE)})
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(errors) == 4
    for case, (rel, low, high) in errors.items():
        cap = 20.0 if "indoor" in case else 80.0
        assert 0 < low < high < cap and high - low > 1e-3 * cap, case  # a live, bounded output
        assert rel < 1e-5, f"{case}: relative L2 {rel:.2e}"
