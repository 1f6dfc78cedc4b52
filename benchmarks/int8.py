"""The int8 CPU mode against fp32: speed side by side, and what quantisation costs in accuracy.

    python benchmarks/int8.py VIDEO... [--model flashdepth-s | --checkpoint PATH] [--resolution 280]
                              [--frames 24] [--json out.json]

For each video, the same frames stream through three runners in one process, frames interleaved
(the order rotates every frame): PyTorch fp32 (the reference answer), the ONNX graph in fp32 and
the ONNX graph with dynamic int8 matrix multiplies, all on ONNX Runtime's / PyTorch's CPU paths.
Reported per video: median ms per frame of each, the int8 speed-up over both fp32 runners, the
relative L2 difference of int8 depth to fp32 depth, and delta1 / AbsRel of int8 against fp32
after one least-squares scale and shift per sequence in disparity space (the evaluation protocol,
with the fp32 output standing in for the ground truth).

Accuracy needs weights that predict depth: with ``--model`` and no download available the
published layout is filled with random weights, which is fine for speed but not for accuracy;
pass ``--checkpoint`` (e.g. the published weights) for the accuracy columns to mean something.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--model", default="flashdepth-s", help="the layout of the random weights (without --checkpoint)")
    p.add_argument("--checkpoint", help="weights (default: random weights in the --model layout)")
    p.add_argument("--resolution", type=int, default=280, help="short side the frames are processed at")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args()

    from flashdepth import create_model, load_model
    from flashdepth.apps.bench import machine
    from flashdepth.export import OnnxRunner
    from flashdepth.io.sources import open_source
    from flashdepth.metrics import depth_metrics
    from flashdepth.inference.preprocess import model_processing_size, normalise, to_float_rgb

    if args.checkpoint:
        model = load_model(args.checkpoint)  # the variant is detected from the keys
        weights = args.checkpoint
    else:
        torch.manual_seed(0)
        model = create_model(args.model).eval().requires_grad_(False)
        weights = f"random ({args.model} layout)"
    runners = {"torch-fp32": model, "onnx-fp32": OnnxRunner.from_model(model, "onnxruntime"),
               "onnx-int8": OnnxRunner.from_model(model, "onnxruntime", int8=True)}
    records = []
    for video in args.videos:
        states = {name: None for name in runners}
        times = {name: [] for name in runners}
        depths = {name: [] for name in runners}
        size = None
        for i, frame in enumerate(open_source(video)):
            if i >= args.frames + args.warmup:
                break
            rgb = to_float_rgb(torch.from_numpy(frame.image))  # (3, H, W)
            if size is None:
                size = model_processing_size(model.config, *rgb.shape[-2:], args.resolution)
            x = normalise(rgb, size, model.config.input)  # (1, 3, h, w)
            names = list(runners)
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                t = time.perf_counter()
                with torch.inference_mode():
                    depth, states[name] = runners[name](x, states[name])
                if i >= args.warmup:
                    times[name].append(1000 * (time.perf_counter() - t))
                    depths[name].append(depth[0].numpy().copy())
        ref = np.stack(depths["torch-fp32"])
        record = {"video": Path(video).name, "size": f"{size[0]}x{size[1]}", "frames": len(ref), "weights": weights}
        for name in runners:
            record[f"{name}_ms"] = float(np.median(times[name]))
        for name in ("onnx-fp32", "onnx-int8"):
            pred = np.stack(depths[name])
            scores = depth_metrics(pred, ref)
            record[f"{name}_rel_l2"] = float(np.linalg.norm(pred - ref) / np.linalg.norm(ref))
            record[f"{name}_delta1"] = scores["delta1"]
            record[f"{name}_abs_rel"] = scores["abs_rel"]
        record["int8_speedup_vs_torch"] = record["torch-fp32_ms"] / record["onnx-int8_ms"]
        record["int8_speedup_vs_onnx_fp32"] = record["onnx-fp32_ms"] / record["onnx-int8_ms"]
        records.append(record)
        print(json.dumps(record), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv),
                                               "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
