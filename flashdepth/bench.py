"""Speed as a measured property: steady-state streaming latency, FLOPs, and the machine's peak.

Every case is timed side by side with the all-reference path of the same weights in the same
process, frames interleaved (the order alternates every frame), so a speed-up is a ratio that
noise from other processes affects on both sides alike. Weights are random: speed does not
depend on their values.

>>> result = bench_case(BenchCase("flashdepth-s", (518, 518)), frames=10)
>>> result["latency_ms"], result["speedup_vs_reference"], result["fraction_of_peak"]
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .backends import get_backend
from .device import autocast, dtype_of, resolve_device
from .models import FlashDepth
from .registry import create_model
from .utils import peak_rss_bytes


@dataclass(frozen=True)
class BenchCase:
    model: str  # a registered model name
    size: tuple[int, int]  # (H, W) processing size, multiples of the patch
    precision: str = "fp32"
    backend: str = "torch"  # a row of flashdepth.backends.BACKENDS
    device: str = "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                       repeats: int = 5) -> float:
    """The machine's measured matrix-multiply rate (best of ``repeats`` n x n products)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        if i:  # the first product is a warm-up
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_frame(model: FlashDepth, size: tuple[int, int], device: torch.device) -> int:
    """FLOPs of one steady-state frame (state carried), counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, *size, device=device)
    with torch.inference_mode():
        _, state = model(x)
        with FlopCounterMode(display=False) as counter:
            model(x, state)
    return int(counter.get_total_flops())


def time_interleaved(runners: dict[str, Callable], frames: list[torch.Tensor], warmup: int, device: torch.device,
                     precision: str = "fp32") -> dict[str, list[float]]:
    """Per-frame milliseconds of each runner, streaming ``frames`` with its own state; the
    runners take turns on every frame, in an order that rotates, after ``warmup`` frames each."""
    names = list(runners)
    states: dict[str, object] = {name: None for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode(), autocast(device, precision):
        for i, x in enumerate(frames):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                _sync(device)
                t = time.perf_counter()
                _, states[name] = runners[name](x, states[name])
                _sync(device)
                if i >= warmup:
                    times[name].append(1000 * (time.perf_counter() - t))
    return times


def bench_case(case: BenchCase, frames: int = 10, warmup: int = 2, reference: bool = True,
               peak_gflops: Optional[float] = None) -> dict:
    """Time ``case`` (and, side by side, the same weights on the reference paths) -> one record."""
    device = resolve_device(case.device)
    torch.manual_seed(0)
    model = create_model(case.model).to(device).eval().requires_grad_(False)
    runners = {"measured": get_backend(case.backend).create(model, case.size, device)}
    if reference:
        ref = create_model(case.model).to(device).eval().requires_grad_(False)
        ref.load_state_dict(model.state_dict())
        ref.set_fast_paths(**{op: False for op in model.fast_paths()})
        runners["reference"] = ref
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    inputs = [torch.randn(1, 3, *case.size, device=device) for _ in range(min(frames + warmup, 4))]
    sequence = [inputs[i % len(inputs)] for i in range(frames + warmup)]
    times = time_interleaved(runners, sequence, warmup, device, case.precision)
    measured = np.asarray(times["measured"])
    flops = flops_per_frame(model, case.size, device)
    if peak_gflops is None:
        peak_gflops = matmul_peak_gflops(device, dtype_of(case.precision) if device.type == "cuda" else torch.float32)
    median = float(np.median(measured))
    record = {
        **dataclasses.asdict(case), "size": f"{case.size[0]}x{case.size[1]}", "frames": int(measured.size),
        "latency_ms": median, "latency_p95_ms": float(np.percentile(measured, 95)), "fps": 1000.0 / median,
        "gflop_per_frame": flops / 1e9, "gflops_achieved": flops / 1e6 / median,
        "matmul_peak_gflops": peak_gflops, "fraction_of_peak": flops / 1e6 / median / peak_gflops,
        "peak_rss_mib": peak_rss_bytes() / 2**20,
        "peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    if reference:
        ref_ms = np.asarray(times["reference"])
        record.update(reference_latency_ms=float(np.median(ref_ms)),
                      speedup_vs_reference=float(np.median(ref_ms / measured)))
    return record


def machine() -> dict:
    """What the figures were measured on."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def summarize(records: list[dict]) -> str:
    """A markdown table of bench records."""
    head = ("| model | size | precision | backend | device | ms/frame (p50) | p95 | FPS | GFLOP/frame | GFLOP/s | "
            "% of peak | vs reference |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        speedup = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else "-"
        lines.append(f"| {r['model']} | {r['size']} | {r['precision']} | {r['backend']} | {r['device']} | "
                     f"{r['latency_ms']:.1f} | {r['latency_p95_ms']:.1f} | {r['fps']:.2f} | {r['gflop_per_frame']:.1f} | "
                     f"{r['gflops_achieved']:.1f} | {100 * r['fraction_of_peak']:.0f}% | {speedup} |")
    return "\n".join(lines)

