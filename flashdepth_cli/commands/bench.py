"""`flashdepth bench`: speed per model, size, precision and backend, side by side with the references."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flashdepth.config import PRECISIONS
from flashdepth.inference.registry import list_models

from ..common import UsageError, parse_size

HELP = "measure speed: latency, FPS, FLOPs, memory, and the ratio to the reference paths"
DESCRIPTION = """\
For every combination of --model, --size, --precision and --backend: stream random frames with the
state carried (random weights: speed does not depend on them), after --warmup frames, and report
per-frame latency (median, p95, min-max), FPS, FLOPs per frame (torch.utils.flop_counter), the GFLOP/s
achieved and its share of this machine's measured matrix-multiply peak, peak memory, and the
speed-up over the same weights on the pure-PyTorch reference paths, timed in the same process
with frames interleaved (the per-frame ratio's median and min-max). The warm-up count and the
spread are in the output and the JSON records. Figures and the exact commands behind them: docs/performance.md."""
EXAMPLES = """\
  flashdepth bench --model flashdepth-s --size 518x518
  flashdepth bench --model flashdepth-s flashdepth-l --size 280x504 --frames 20 --json cpu.json
  flashdepth bench --model flashdepth --size 1148x2044 --device cuda --precision bf16 --backend torch compile
  flashdepth bench --model flashdepth-s --size 280x504 --metric-from depth-anything-v2-metric-outdoor-small:5 --frames 10"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from flashdepth.inference.backends import BACKENDS

    p.add_argument("--model", nargs="+", default=["flashdepth-s"], choices=list_models(), metavar="MODEL",
                   help=f"models to time (default flashdepth-s); from: {', '.join(list_models())}")
    p.add_argument("--size", nargs="+", type=parse_size, default=[(518, 518)], metavar="HxW",
                   help="processing sizes, multiples of 14 (default 518x518)")
    p.add_argument("--frames", type=int, default=10, help="timed frames per case (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=list(PRECISIONS), help="default fp32")
    p.add_argument("--backend", nargs="+", default=["torch"], choices=list(BACKENDS),
                   help=f"default torch; from: {', '.join(BACKENDS)}")
    from flashdepth.inference.modes import DEFAULT_MODE, MODES

    p.add_argument("--mode", nargs="+", default=[DEFAULT_MODE], choices=list(MODES),
                   help=f"default {DEFAULT_MODE}; " + "; ".join(f"{m.name}: {m.description}" for m in MODES.values())
                   + ". Windowed figures are per new frame (a window's time over the frames it adds), and the first "
                   "depth needs a whole window; a model without the mode is skipped there")
    p.add_argument("--no-reference", action="store_true", help="skip timing the reference paths")
    p.add_argument("--metric-from", metavar="MODEL[:EVERY]",
                   help="also time each model's stream alone and aligned to metres by the metric model MODEL run "
                        "every EVERY frames (whole session steps on uint8 frames of --size, side by side, frames "
                        "interleaved), and report the added time per frame (docs/metric.md)")
    p.add_argument("--json", help="write the records (and the machine) to this file at the end")
    p.add_argument("--jsonl", help="append each record to this file (one JSON line, with the machine) as soon as it "
                                   "is measured, so a later failure loses nothing")


def main(args: argparse.Namespace) -> int:
    from flashdepth.apps.bench import (BenchCase, NoWindowedModeError, bench_case, machine, matmul_peak_gflops,
                                       summary_header, summary_row)
    from flashdepth.device import dtype_of, resolve_device

    for h, w in args.size:
        if h % 14 or w % 14:
            raise UsageError(f"--size {h}x{w}: sides must be multiples of 14 (e.g. {round(h / 14) * 14}x{round(w / 14) * 14})")
    device = resolve_device(args.device)
    peaks = {p: matmul_peak_gflops(device, dtype_of(p) if device.type == "cuda" else dtype_of("fp32"))
             for p in args.precision}
    records = []
    print(f"warm-up {args.warmup} frame(s), then {args.frames} timed frame(s) per case; "
          "min-max: the spread over the timed frames (of the per-frame ratio for vs reference)")
    print(summary_header(), flush=True)
    for model in args.model:
        for size in args.size:
            for precision in args.precision:
                for backend, mode in ((b, m) for b in args.backend for m in args.mode
                                      if m == "streaming" or b == "torch"):  # windows: torch only
                    case = BenchCase(model, size, precision, backend, str(device), mode=mode)
                    try:
                        record = bench_case(case, frames=args.frames, warmup=args.warmup,
                                            reference=not args.no_reference, peak_gflops=peaks[precision])
                    except NoWindowedModeError:
                        print(f"| {model} | {mode} | (skipped: {model} has no windowed mode) |", flush=True)
                        continue
                    records.append(record)
                    print(summary_row(record), flush=True)
                    if args.jsonl:
                        Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
                        with open(args.jsonl, "a") as f:
                            f.write(json.dumps({"machine": machine(), "peak_gflops": peaks[precision], **record}) + "\n")
    metric_records = []
    if args.metric_from:
        from flashdepth.apps.bench import bench_metric_from, metric_summary
        from flashdepth.metric import MetricFrom

        MetricFrom.parse(args.metric_from)  # a malformed spec fails before anything is timed
        for model in args.model:
            for size in args.size:
                case = BenchCase(model, size, args.precision[0], "torch", str(device))
                metric_records.append(bench_metric_from(case, args.metric_from, frames=args.frames, warmup=args.warmup))
        print("\nthe cost of --metric-from (the mean over the timed frames):")
        print(metric_summary(metric_records), flush=True)
    print(f"\nmatrix-multiply peak measured here: {', '.join(f'{p} {v:.0f} GFLOP/s' for p, v in peaks.items())}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine(), "peaks_gflops": peaks, "records": records,
                                                 "metric_from": metric_records}, indent=1))
    return 0
