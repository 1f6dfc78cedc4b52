"""Per-frame latency of the streaming models, fast paths against references, in one process.

    python benchmarks/speed.py [--model flashdepth-s] [--size 280x504] [--frames 10] [--device cpu]

For each setting the model streams the same frames; the table gives milliseconds per frame
(median) and the ratio to the all-reference run (FLASHDEPTH_REFERENCE=1), so the numbers compare
paths on one machine rather than claim absolute speeds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import flashdepth


def stream(model, frames, device) -> list[float]:
    times, state = [], None
    with torch.inference_mode():
        for x in frames:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            _, state = model(x, state)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(1000 * (time.perf_counter() - t))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flashdepth-s")
    parser.add_argument("--size", default="280x504", help="HxW, multiples of 14")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    h, w = (int(v) for v in args.size.split("x"))
    model = flashdepth.create_model(args.model).to(device=device, dtype=dtype).eval()
    frames = [torch.randn(1, 3, h, w, device=device, dtype=dtype) for _ in range(args.frames)]
    stream(model, frames[:2], device)  # warm-up
    rows = []
    for label, env in (("reference (FLASHDEPTH_REFERENCE=1)", "1"), ("reference SSD, fast attention", "ssd"),
                       ("fast paths (default)", "")):
        os.environ["FLASHDEPTH_REFERENCE"] = env
        rows.append((label, statistics.median(stream(model, frames, device))))
    os.environ.pop("FLASHDEPTH_REFERENCE")
    base = rows[0][1]
    print(f"{args.model} {h}x{w} {args.dtype} on {device}, {args.frames} frames, torch {torch.__version__}")
    print("| path | ms/frame (median) | speed vs reference |")
    print("|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {ms:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
