"""Parity of the Video Depth Anything rows with the official code (DepthAnything/Video-Depth-Anything).

The official code is not a package: point ``FLASHDEPTH_VDA_OFFICIAL`` at a checkout of the repository
(its ``video_depth_anything/`` and ``utils/`` folders; einops and easydict importable). The comparison
runs in a subprocess that stubs torchvision (imported only for ``Compose``) and cv2 when they are
missing (then only frames already at the processing size are compared: the official resize is
skipped, as it is the identity there). Skipped when the checkout is not given.

Both modes, random weights in the published layout with every layer live (the zero-initialised
``proj_out`` of the motion modules included), relative L2 at most 1e-4:
  * the window forward (T frames at once) against the official ``VideoDepthAnything.forward``,
    with T = 8 (the official head's micro-batched path) and T = 6 (its single pass);
  * the streaming mode over 14 frames (past the 11th, where the official cache queue starts
    dropping frames) against ``video_depth_stream.VideoDepthAnything.infer_video_depth_one``;
for the relative ViT-S model and the metric ViT-S model.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
OFFICIAL = os.environ.get("FLASHDEPTH_VDA_OFFICIAL", "")

SCRIPT = r"""
import json, sys, types
for name in ("torchvision", "cv2"):
    try:
        __import__(name)
    except ImportError:
        if name == "torchvision":
            tv = types.ModuleType("torchvision"); tvt = types.ModuleType("torchvision.transforms")
            class Compose:
                def __init__(self, steps): self.steps = steps
                def __call__(self, x):
                    for step in self.steps: x = step(x)
                    return x
            tvt.Compose = Compose; tv.transforms = tvt
            sys.modules["torchvision"] = tv; sys.modules["torchvision.transforms"] = tvt
        else:
            cv2 = types.ModuleType("cv2"); cv2.INTER_CUBIC = 2; cv2.INTER_NEAREST = 0
            def resize(image, size, interpolation=None):
                assert (image.shape[1], image.shape[0]) == tuple(size), "without cv2 only unresized frames compare"
                return image.copy()
            cv2.resize = resize; sys.modules["cv2"] = cv2
import numpy as np
import torch
import flashdepth
from conftest import randomize
from video_depth_anything.video_depth import VideoDepthAnything as Offline
from video_depth_anything.video_depth_stream import VideoDepthAnything as Streaming

KW = {"vits": dict(encoder="vits", features=64, out_channels=[48, 96, 192, 384])}
H, W, STREAM = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = {}
mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
for seed, name in enumerate(["video-depth-anything-small", "metric-video-depth-anything-small"]):
    ours = randomize(flashdepth.create_model(name), seed=11 + seed).eval()
    with torch.no_grad():
        ours.head.scratch.output_conv2[2].bias.fill_(3.0)  # a live output, so the comparison means something
    state = ours.state_dict()
    offline = Offline(**KW["vits"], metric=name.startswith("metric")).eval()
    offline.load_state_dict(state, strict=True)
    streaming = Streaming(**KW["vits"]).eval()
    streaming.load_state_dict(state, strict=True)

    for t in (8, 6):
        x = torch.randn(1, t, 3, H, W, generator=torch.Generator().manual_seed(t))
        with torch.no_grad():
            a = offline(x)
            b = ours.forward_window(x)
        out[f"{name} window T={t}"] = [((a - b).norm() / a.norm()).item(), a.norm().item()]

    g = np.random.default_rng(5)
    worst, norm, s = 0.0, 0.0, None
    for i in range(STREAM):
        pixels = g.uniform(0, 255, size=(H, W, 3)).astype(np.float32)
        a = torch.from_numpy(streaming.infer_video_depth_one(pixels, input_size=min(H, W), device="cpu", fp32=True))
        frame = ((torch.from_numpy(pixels).permute(2, 0, 1) / 255.0 - mean) / std)[None]
        with torch.no_grad():
            b, s = ours(frame, s)
        worst = max(worst, ((a - b[0]).norm() / a.norm()).item())
        norm = max(norm, a.norm().item())
    out[f"{name} streaming {STREAM} frames"] = [worst, norm]
print(json.dumps(out))
"""


def run_parity(official: str, height: int = 140, width: int = 196, frames: int = 14) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), official, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(height), str(width), str(frames)], capture_output=True,
                            text=True, timeout=900, env=env, cwd=official)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _importable(official: str) -> bool:
    return bool(official) and (Path(official) / "video_depth_anything" / "video_depth_stream.py").is_file()


@pytest.mark.skipif(not _importable(OFFICIAL), reason="official Video Depth Anything code not given: set "
                    "FLASHDEPTH_VDA_OFFICIAL to a checkout of DepthAnything/Video-Depth-Anything")
def test_video_depth_anything_equals_the_official_code_in_both_modes():
    errors = run_parity(OFFICIAL)
    assert len(errors) == 6
    for case, (rel, norm) in errors.items():
        assert norm > 1.0, case  # a non-trivial output
        assert rel <= 1e-4, f"{case}: relative L2 {rel:.2e}"


if __name__ == "__main__":  # python tests/test_vda_official.py OFFICIAL [H W FRAMES]: print the figures
    args = sys.argv[1:]
    print(json.dumps(run_parity(args[0], *map(int, args[1:])), indent=1))
