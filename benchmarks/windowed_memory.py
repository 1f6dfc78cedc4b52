"""Peak memory of the windowed mode against video length: it must not grow with the video.

Runs ``run_to_folder(..., RunOptions(mode="windowed"))`` in fresh processes on N and 10 N
generated frames (a file-like source: not live, made as it is read) with a stand-in window model
(cheap, so the frames and depths held are what shows), and prints the peak RSS of each. With
``--official DIR`` (a checkout of DepthAnything/Video-Depth-Anything), the official
``infer_video_depth`` runs on the same frames and stand-in for comparison (it holds the whole
video: its memory grows with it). ``--model NAME`` uses a registered model with a window forward
(random weights) instead of the stand-in.

    python benchmarks/windowed_memory.py [--frames 200] [--size 112x196] [--official DIR] [--model NAME]
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile

import numpy as np


def frame(i: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def standin(x):
    """(B, T, 3, h, w) -> (B, T, h, w): a depth of each frame, scaled by the window's mean."""
    import torch

    return (x.mean(dim=2) + 3.0) * (1.5 + torch.tanh(x.mean(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1)))


class StandinModel:
    """What a session needs of a model, and a window forward."""

    def __init__(self):
        from flashdepth.config import ModelConfig

        self.config = ModelConfig(name="windowed-standin")

    def min_input_size(self):
        return 14

    def forward_window(self, frames):
        return standin(frames)

    def __call__(self, frame, state=None):
        return standin(frame[:, None])[:, 0], state


def child(which: str, n: int, h: int, w: int, official: str, model: str) -> None:
    if which == "ours":
        import flashdepth
        from flashdepth.apps.pipeline import RunOptions, run_to_folder
        from flashdepth.inference.session import DepthSession
        from flashdepth.io.sources import Frame, Source

        class Generated(Source):
            name, live, frame_count = "generated", False, n

            def __iter__(self):
                for i in range(n):
                    yield Frame(frame(i, h, w), i)

        net = flashdepth.create_model(model).eval() if model else StandinModel()
        with tempfile.TemporaryDirectory() as out:
            stats = run_to_folder(Generated(), DepthSession(net, device="cpu"), out + "/o",
                                  RunOptions(outputs=("raw",), mode="windowed"))
        assert stats.frames == n
    else:
        import types

        for name in ("cv2", "torchvision", "torchvision.transforms", "easydict", "einops"):
            sys.modules.setdefault(name, types.ModuleType(name))
        cv2 = sys.modules["cv2"]
        cv2.INTER_NEAREST, cv2.INTER_CUBIC, cv2.INTER_AREA = 0, 2, 3
        cv2.resize = lambda image, size, interpolation=None: image  # frames are given at the input size

        class Compose:
            def __init__(self, steps):
                self.steps = steps

            def __call__(self, sample):
                for step in self.steps:
                    sample = step(sample)
                return sample

        sys.modules["torchvision.transforms"].Compose = Compose
        sys.modules["easydict"].EasyDict = dict
        sys.modules["einops"].rearrange = sys.modules["einops"].repeat = None
        sys.path.insert(0, official)
        import video_depth_anything.video_depth as vd

        vd.tqdm = lambda x: x
        model_ = types.SimpleNamespace(metric=False, forward=standin)
        frames = np.stack([frame(i, h, w) for i in range(n)])
        depths, _ = vd.VideoDepthAnything.infer_video_depth(model_, frames, 30, input_size=min(h, w), device="cpu",
                                                            fp32=True)
        assert depths.shape == (n, h, w)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="112x196", help="HxW of the frames (multiples of 14)")
    parser.add_argument("--official", default="", help="a checkout of DepthAnything/Video-Depth-Anything")
    parser.add_argument("--model", default="", help="a registered model with a window forward (default: a stand-in)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    if args.child:
        return child(args.child[0], int(args.child[1]), h, w, args.official, args.model)
    for which in ["ours"] + (["official"] if args.official else []):
        for n in (args.frames, 10 * args.frames):
            cmd = [sys.executable, __file__, "--size", args.size, "--official", args.official, "--model", args.model,
                   "--child", which, str(n)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rss = re.search(r"peak RSS (\d+) MiB", out).group(1)
            label = "windowed run_to_folder" if which == "ours" else "official infer_video_depth"
            print(f"{label:28s} {n:6d} frames {h}x{w}: peak RSS {rss} MiB")


if __name__ == "__main__":
    main()
