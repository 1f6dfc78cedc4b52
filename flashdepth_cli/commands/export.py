"""`flashdepth export onnx`: the per-frame step as an ONNX graph with the stream state as inputs and outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from flashdepth.inference.registry import list_models

from ..common import UsageError, parse_size

FORMATS = ("onnx",)
HELP = "export a model to ONNX (frame and stream state in, depth and the next state out)"
DESCRIPTION = """\
Writes one graph for one frame step. Inputs: frame float32 (B, 3, H, W), RGB pixels scaled to
[0, 1] (8-bit / 255), then ImageNet-normalised;
for the streaming models also state_in_0..state_in_{k-1}. Outputs: depth float32 (B, H, W) and
state_out_0..state_out_{k-1}: feed each frame's state_out_i as the next frame's state_in_i; all-zero
states start a stream. The graph's metadata records the variant, patch size, normalisation, layout,
channel order, state shapes and which output feeds which input. TensorRT builds an engine from the
same file (docs/export.md)."""
EXAMPLES = """\
  flashdepth export onnx --model flashdepth-s --size 518x924 -o flashdepth-s.onnx --verify 2
  flashdepth export onnx --model flashdepth-l --checkpoint my.pth --size 518x924 --dynamic -o l.onnx
  flashdepth run video.mp4 --checkpoint flashdepth-s.onnx --backend onnxruntime"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=FORMATS, help="the graph format (onnx)")
    p.add_argument("--model", choices=list_models(), metavar="MODEL",
                   help=f"the variant (its published weights unless --checkpoint); from: {', '.join(list_models())}")
    p.add_argument("--checkpoint", metavar="PATH", help="weights file to export (variant detected from its keys)")
    p.add_argument("--random-weights", action="store_true", help="random weights (for timing a runtime, not for depth)")
    p.add_argument("--size", type=parse_size, required=True, metavar="HxW",
                   help="frame size the graph takes, multiples of the patch size (e.g. 518x924)")
    p.add_argument("--batch", type=int, default=1, help="frames (streams) per call (default 1)")
    p.add_argument("--dynamic", action="store_true", help="leave the batch dimension free")
    p.add_argument("--fp16", action="store_true",
                   help="compute in float16 inside the graph (inputs and outputs stay float32); for GPU runtimes")
    p.add_argument("--int8", action="store_true",
                   help="dynamic int8 quantisation of the matrix multiplies (CPU; faster, less accurate)")
    p.add_argument("--verify", type=int, default=0, metavar="N",
                   help="after export, run N frames through ONNX Runtime and PyTorch and print their relative difference")
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="where to write the graph")


def main(args: argparse.Namespace) -> int:
    import torch

    from flashdepth.export import export_onnx
    from flashdepth.inference.registry import create_model
    from flashdepth.inference.weights import load_model

    if not (args.model or args.checkpoint):
        raise UsageError("give --model NAME (published weights), --checkpoint PATH, or both")
    if args.random_weights and args.checkpoint:
        raise UsageError("--random-weights and --checkpoint exclude each other")
    if args.random_weights and not args.model:
        raise UsageError("--random-weights needs --model NAME (the architecture)")
    if args.fp16 and args.int8:
        raise UsageError("--fp16 and --int8 exclude each other")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch}: give 1 or more")
    h, w = args.size
    if args.random_weights:
        torch.manual_seed(0)
        model = create_model(args.model).eval().requires_grad_(False)
    else:
        model = load_model(args.checkpoint or args.model, variant=args.model)
    p = model.patch_size
    if h % p or w % p:
        raise UsageError(f"--size {h}x{w}: sides must be multiples of {p} (e.g. {max(p, round(h / p) * p)}x"
                         f"{max(p, round(w / p) * p)})")
    graph = export_onnx(model, args.output, (h, w), batch=args.batch, dynamic=args.dynamic, fp16=args.fp16, int8=args.int8)
    size_mb = Path(args.output).stat().st_size / 2**20
    print(f"wrote {args.output} ({size_mb:.1f} MB): {model.config.name} at {h}x{w}, batch "
          f"{'dynamic' if args.dynamic else args.batch}, {graph.precision}; inputs {', '.join(graph.input_names)}; "
          f"outputs {', '.join(graph.output_names)}")
    if args.verify:
        print(f"onnxruntime vs PyTorch over {args.verify} frames, relative L2 of depth: "
              f"{verify(model, Path(args.output), args.verify, 2 if args.dynamic else args.batch):.2e}")
    return 0


def verify(model, path: Path, frames: int, batch: int) -> float:
    """The largest per-frame relative L2 difference between the graph (ONNX Runtime) and PyTorch,
    with the state carried on both sides."""
    import torch

    from flashdepth.export import OnnxRunner

    runner = OnnxRunner.from_file(path, "onnxruntime")
    torch.manual_seed(1)
    worst, state, ref_state = 0.0, None, None
    for _ in range(frames):
        frame = torch.randn(batch, 3, *runner.fixed.size)
        depth, state = runner(frame, state)
        with torch.inference_mode():
            ref, ref_state = model(frame, ref_state)
        worst = max(worst, float((depth - ref).norm() / ref.norm().clamp_min(1e-12)))
    return worst
