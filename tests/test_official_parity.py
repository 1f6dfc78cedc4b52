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
