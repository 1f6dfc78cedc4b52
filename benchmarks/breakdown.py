"""Where the time of one streaming step goes, by kind of work, with the fast paths and without.

    python benchmarks/breakdown.py [--model flashdepth-s] [--size 518x518] [--frames 3] [--json out.json]

Runs the same weights twice in one process -- the fast paths (SDPA attention, channels-last
convolutions) and the pure-PyTorch references -- under ``torch.profiler`` on the CPU, streaming
with the state carried after one warm-up frame, and sums each operator's self time into the
groups below (the ``aten::`` names an operator maps to). The reference paths stand for "before":
they are the straightforward statement of the model that the fast paths replace.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

GROUPS = {  # first match wins
    "matmul (linear layers, attention products)": ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm"),
    "attention (fused SDPA)": ("scaled_dot_product", "_flash_attention", "_efficient_attention"),
    "softmax": ("softmax",),
    "convolution": ("convolution", "conv2d", "mkldnn_convolution", "conv1d", "_convolution", "conv_transpose"),
    "interpolation": ("upsample", "interpolate", "grid_sampler"),
    "pooling": ("pool",),
    "normalisation": ("layer_norm", "group_norm", "norm", "rsqrt"),
    "copies and layout": ("copy_", "contiguous", "clone", "cat", "to_dense", "_to_copy", "empty_like", "permute"),
    "activations": ("gelu", "relu", "silu", "softplus", "sigmoid", "exp", "tanh"),
    "element-wise and reductions": ("add", "mul", "sub", "div", "sum", "mean", "cumsum", "where", "clamp", "pow"),
}


def group_of(name: str) -> str:
    op = name.split("::")[-1]
    for group, keys in GROUPS.items():
        if any(k in op for k in keys):
            return group
    return "other"


def profile(model, size: tuple[int, int], frames: int) -> dict:
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        _, state = model(x, None)  # warm-up frame
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(frames):
                _, state = model(x, state)
    groups: dict[str, float] = {}
    for event in prof.key_averages():
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + event.self_cpu_time_total / 1000 / frames
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="flashdepth-s")
    p.add_argument("--size", default="518x518")
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()

    from flashdepth import create_model
    from flashdepth.apps.bench import machine

    size = tuple(int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    fast = create_model(args.model).eval().requires_grad_(False)
    reference = create_model(args.model).eval().requires_grad_(False)
    reference.load_state_dict(fast.state_dict())
    reference.set_fast_paths(**{op: False for op in fast.fast_paths()})
    out = {"model": args.model, "size": args.size, "frames": args.frames, "machine": machine(),
           "command": " ".join(sys.argv), "fast_paths": fast.fast_paths(),
           "reference": profile(reference, size, args.frames), "fast": profile(fast, size, args.frames)}
    names = sorted(set(out["reference"]) | set(out["fast"]), key=lambda g: -out["reference"].get(g, 0.0))
    print(f"| work ({args.model}, {args.size}, ms per frame, operator self time) | reference paths | fast paths |")
    print("|---|---|---|")
    for g in names:
        print(f"| {g} | {out['reference'].get(g, 0.0):.1f} | {out['fast'].get(g, 0.0):.1f} |")
    print(f"| total | {sum(out['reference'].values()):.1f} | {sum(out['fast'].values()):.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
