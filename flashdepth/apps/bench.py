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

from ..inference.backends import CompiledRunner, get_backend
from ..device import autocast, cast_weights_for, configure_float32, dtype_of, resolve_device
from ..models import FlashDepth
from ..inference.registry import create_model
from ..errors import ConfigError
from ..inference.modes import DEFAULT_MODE, get_mode
from ..inference.windowed import WindowOptions
from ..utils import peak_rss_bytes


class NoWindowedModeError(ConfigError):
    """A windowed case for a model that only streams."""


@dataclass(frozen=True)
class BenchCase:
    model: str  # a registered model name
    size: tuple[int, int]  # (H, W) processing size, multiples of the patch
    precision: str = "fp32"
    backend: str = "torch"  # a row of flashdepth.inference.backends.BACKENDS
    device: str = "cpu"
    # a row of flashdepth.inference.modes.MODES. streaming: frame by frame, state carried, per-frame
    # latency. windowed: whole windows through the model's window method, each giving
    # ``window - overlap`` new depths in a long video: per-frame figures are per new frame, and the
    # first depth waits for a whole window of frames.
    mode: str = DEFAULT_MODE
    window: int = WindowOptions.length  # windowed mode: frames per window (Video Depth Anything's 32)
    overlap: int = WindowOptions.overlap  # windowed mode: frames each window shares with the one before (10)

    def __post_init__(self):
        get_mode(self.mode)
        if self.mode == "windowed" and self.backend != "torch":
            raise ConfigError(f"the windowed mode runs on the torch backend only, not {self.backend!r}")
        if self.mode == "windowed" and not 0 <= self.overlap < self.window:
            raise ConfigError(f"window={self.window}, overlap={self.overlap}: need 0 <= overlap < window")


def _sync(device: torch.device) -> None:
    """Wait for the device: without it, GPU and MPS timings measure only the enqueueing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


#: square matmul sizes tried for the peak: a GPU needs large products to reach its rate
PEAK_SIZES = {"cuda": (2048, 4096, 8192), "cpu": (512, 1024, 2048)}


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32,
                       sizes: Optional[tuple[int, ...]] = None, repeats: int = 5) -> float:
    """The machine's measured matrix-multiply rate: the best over several n x n sizes (default
    :data:`PEAK_SIZES` of the device type) of ``repeats`` timed products each, after a warm-up."""
    best_rate = 0.0
    for n in sizes or PEAK_SIZES.get(device.type, PEAK_SIZES["cpu"]):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        for i in range(repeats + 1):
            _sync(device)
            t = time.perf_counter()
            a @ b
            _sync(device)
            if i:  # the first product of each size is a warm-up
                best_rate = max(best_rate, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        del a, b
    return best_rate


def flops_per_frame(model: FlashDepth, size: tuple[int, int], device: torch.device, precision: str = "fp32") -> int:
    """FLOPs of one steady-state frame (state carried), counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, *size, device=device)
    with torch.inference_mode(), autocast(device, precision):
        _, state = model(x)
        with FlopCounterMode(display=False) as counter:
            model(x, state)
    return int(counter.get_total_flops())


def time_interleaved(runners: dict[str, Callable], frames: list[torch.Tensor], warmup: int, device: torch.device,
                     precision: str = "fp32", peaks: Optional[dict[str, int]] = None) -> dict[str, list[float]]:
    """Per-frame milliseconds of each runner, streaming ``frames`` with its own state; the
    runners take turns on every frame, in an order that rotates, after ``warmup`` frames each.

    On CUDA, ``peaks`` (a dict) receives each runner's own peak allocated bytes: the peak is reset
    before and read after each of its calls, so one runner's memory never counts for another."""
    names = list(runners)
    states: dict[str, object] = {name: None for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    track = peaks is not None and device.type == "cuda"
    with torch.inference_mode(), autocast(device, precision):
        for i, x in enumerate(frames):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                _sync(device)
                if track:
                    torch.cuda.reset_peak_memory_stats(device)
                t = time.perf_counter()
                _, states[name] = runners[name](x, states[name])
                _sync(device)
                if i >= warmup:
                    times[name].append(1000 * (time.perf_counter() - t))
                if track:
                    peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated(device))
    return times


def bench_case(case: BenchCase, frames: int = 10, warmup: int = 2, reference: bool = True,
               peak_gflops: Optional[float] = None) -> dict:
    """Time ``case`` (and, side by side, the same weights on the reference paths) -> one record.

    The record holds the warm-up count and the spread of every timing (p50, p95, min, max), and
    of the per-frame ratio to the reference, so the noise of a comparison is visible."""
    device = resolve_device(case.device)
    configure_float32(device, case.precision)
    torch.manual_seed(0)
    model = create_model(case.model).to(device).eval().requires_grad_(False)
    if get_mode(case.mode).method is not None:  # the mode calls a window method of the model
        return _bench_windowed(case, model, device, frames, warmup, peak_gflops)
    if reference:
        ref = create_model(case.model).to(device).eval().requires_grad_(False)
        ref.load_state_dict(model.state_dict())
        ref.set_fast_paths(**{op: False for op in model.fast_paths()})
        cast_weights_for(ref, case.precision)  # as a session would (bf16/fp16: weights cast once)
    runners = {"measured": get_backend(case.backend).create(model, device)}
    if isinstance(runners["measured"], (torch.nn.Module, CompiledRunner)):  # graph runners export fp32 weights
        cast_weights_for(model, case.precision)
    if reference:
        runners["reference"] = ref
    inputs = [torch.randn(1, 3, *case.size, device=device) for _ in range(min(frames + warmup, 4))]
    sequence = [inputs[i % len(inputs)] for i in range(frames + warmup)]
    peaks: dict[str, int] = {}
    times = time_interleaved(runners, sequence, warmup, device, case.precision, peaks=peaks)
    measured = np.asarray(times["measured"])
    flops = flops_per_frame(model, case.size, device, case.precision)
    record = _record(case, device, measured, warmup, flops, peak_gflops, peaks.get("measured"),
                     # the first depth of a stream needs one frame: a steady frame's time (the cold
                     # first frame is a warm-up frame, and its cost is one-off set-up, not the mode's)
                     first_depth_frames=1, first_depth_ms=float(np.median(measured)))
    if reference:
        ref_ms = np.asarray(times["reference"])
        ratios = ref_ms / measured  # per frame: both sides timed on the same frame, back to back
        record.update(**_spread("reference_latency", ref_ms),
                      speedup_vs_reference=float(np.median(ratios)),
                      speedup_min=float(ratios.min()), speedup_max=float(ratios.max()),
                      reference_peak_cuda_mib=peaks["reference"] / 2**20 if "reference" in peaks else None)
    return record


def _bench_windowed(case: BenchCase, model, device: torch.device, frames: int, warmup: int,
                    peak_gflops: Optional[float]) -> dict:
    """Time the windowed (offline) mode: whole windows of ``case.window`` random frames through
    ``model.forward_window`` (frames (1, T, 3, H, W) -> depth (1, T, H, W)); enough windows to
    cover ``frames`` new frames (at least one), after ``warmup`` untimed windows (at least one).
    Per-frame figures are per *new* frame (``window - overlap`` per window): a long video's cost."""
    method = get_mode(case.mode).method  # "forward_window"
    if not callable(getattr(model, method, None)):
        raise NoWindowedModeError(f"{case.model} has no {case.mode} mode (no {method}); bench it with mode='streaming'")
    forward_window = getattr(model, method)
    new = case.window - case.overlap  # depths each window adds in a long video
    windows = max(1, -(-frames // new))
    clip = torch.randn(1, case.window, 3, *case.size, device=device)  # (1, T, 3, H, W)
    times, peak = [], 0
    with torch.inference_mode(), autocast(device, case.precision):
        for i in range(max(1, warmup) + windows):
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            forward_window(clip)  # (1, T, H, W)
            _sync(device)
            if i >= max(1, warmup):
                times.append(1000 * (time.perf_counter() - t))
            if device.type == "cuda":
                peak = max(peak, torch.cuda.max_memory_allocated(device))
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            forward_window(clip)
    window_ms = np.asarray(times)
    per_frame = window_ms / new
    flops = counter.get_total_flops() / new
    return _record(case, device, per_frame, max(1, warmup), flops, peak_gflops,
                   peak if device.type == "cuda" else None, frames=int(windows * new), windows=int(windows),
                   # no depth before a whole window of frames has arrived, then the window's compute
                   first_depth_frames=case.window, first_depth_ms=float(np.median(window_ms)))


def bench_metric_from(case: BenchCase, metric_from: str, frames: int = 10, warmup: int = 2,
                      models: Optional[tuple[torch.nn.Module, torch.nn.Module]] = None) -> dict:
    """The cost of ``metric_from`` (``"MODEL[:EVERY]"``, :class:`flashdepth.metric.MetricFrom`): the
    relative stream of ``case.model`` alone and aligned to the metric model, timed side by side in
    one process, frames interleaved (the order alternates every frame), whole steps of a session
    each: uint8 frames of ``case.size`` (H, W) in, depth at that size out, the metric model at its
    own resolution on every EVERY-th frame, and the fit. The added time is per frame, averaged over
    the timed frames (a whole number of EVERY-frame periods when ``frames`` is a multiple of EVERY):
    the mean, not the median, since only one frame in EVERY pays for the metric model.

    ``models``: (relative, metric) modules to time instead of random-weight ones of the named rows."""
    from ..inference.session import DepthSession
    from ..metric import AlignedSession, MetricFrom, MetricModelReference

    spec = MetricFrom.parse(metric_from)
    device = resolve_device(case.device)
    configure_float32(device, case.precision)
    torch.manual_seed(0)
    relative, metric = models or (create_model(case.model), create_model(spec.model))
    relative, metric = relative.eval().requires_grad_(False), metric.eval().requires_grad_(False)
    plain = DepthSession(relative, device=str(device), precision=case.precision)
    reference = DepthSession(metric, device=str(device), precision=case.precision)
    aligned = AlignedSession(DepthSession(relative, device=str(device), precision=case.precision),
                             MetricModelReference(reference, spec.every, name=spec.model))
    metric_ms: list[tuple[int, float]] = []  # (frame, ms) of each run of the metric model inside the aligned steps
    frame_index = [0]
    metric_step = reference.step

    def timed_step(image):
        t = time.perf_counter()
        out = metric_step(image)
        _sync(device)
        metric_ms.append((frame_index[0], 1000 * (time.perf_counter() - t)))
        return out

    reference.step = timed_step
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*case.size, 3), dtype=np.uint8) for _ in range(4)]
    sessions = {"relative": plain, "aligned": aligned}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for i in range(frames + warmup):
        frame_index[0] = i
        for name in (names if i % 2 == 0 else names[::-1]):
            _sync(device)
            t = time.perf_counter()
            sessions[name].step(images[i % len(images)])
            _sync(device)
            if i >= warmup:
                times[name].append(1000 * (time.perf_counter() - t))
    rel_ms, aligned_ms = np.asarray(times["relative"]), np.asarray(times["aligned"])
    runs = np.asarray([ms for i, ms in metric_ms if i >= warmup])  # the metric model's runs in the timed frames
    return {**dataclasses.asdict(case), "size": f"{case.size[0]}x{case.size[1]}", "metric_model": spec.model,
            "every": spec.every, "frames": int(rel_ms.size), "warmup": int(warmup),
            "relative_mean_ms": float(rel_ms.mean()), "aligned_mean_ms": float(aligned_ms.mean()),
            "added_ms_per_frame": float(aligned_ms.mean() - rel_ms.mean()),
            "aligned_max_ms": float(aligned_ms.max()), "relative_max_ms": float(rel_ms.max()),
            "metric_runs": int(runs.size), "metric_run_ms": float(runs.mean()) if runs.size else None}


METRIC_HEADER = ("| model | size | metric model | every | ms/frame alone (mean) | with --metric-from (mean) | "
                 "added ms/frame | metric model ms/run (runs) |")


def metric_summary(records: list[dict]) -> str:
    """A markdown table of :func:`bench_metric_from` records."""
    rows = [METRIC_HEADER, "|" + "---|" * (METRIC_HEADER.count("|") - 1)]
    for r in records:
        rows.append(f"| {r['model']} | {r['size']} | {r['metric_model']} | {r['every']} | {r['relative_mean_ms']:.1f} | "
                    f"{r['aligned_mean_ms']:.1f} | {r['added_ms_per_frame']:.1f} | "
                    f"{r['metric_run_ms'] or 0:.1f} ({r['metric_runs']}) |")
    return "\n".join(rows)


def _record(case: BenchCase, device: torch.device, ms: np.ndarray, warmup: int, flops: float,
            peak_gflops: Optional[float], peak_cuda_bytes: Optional[int], **extra) -> dict:
    """One record from per-frame milliseconds ``ms`` and FLOPs per frame: latency spread, FPS, the
    achieved rate and its share of the machine's matmul peak (measured here if not given), memory."""
    if peak_gflops is None:
        peak_gflops = matmul_peak_gflops(device, dtype_of(case.precision) if device.type == "cuda" else torch.float32)
    median = float(np.median(ms))
    return {
        **dataclasses.asdict(case), "size": f"{case.size[0]}x{case.size[1]}", "frames": int(ms.size),
        "warmup": int(warmup), **_spread("latency", ms), "fps": 1000.0 / median,
        "gflop_per_frame": flops / 1e9, "gflops_achieved": flops / 1e6 / median,
        "matmul_peak_gflops": peak_gflops, "fraction_of_peak": flops / 1e6 / median / peak_gflops,
        "peak_rss_mib": peak_rss_bytes() / 2**20,
        "peak_cuda_mib": peak_cuda_bytes / 2**20 if peak_cuda_bytes is not None else None,
        **extra,
    }


def _spread(prefix: str, ms: np.ndarray) -> dict:
    """p50 (``<prefix>_ms``), p95, min and max of per-frame milliseconds."""
    return {f"{prefix}_ms": float(np.median(ms)), f"{prefix}_p95_ms": float(np.percentile(ms, 95)),
            f"{prefix}_min_ms": float(ms.min()), f"{prefix}_max_ms": float(ms.max())}


def machine() -> dict:
    """What the figures were measured on."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


HEADER = ("| model | mode | size | precision | backend | device | ms/frame (p50) | p95 | min-max | FPS | "
          "first depth: frames needed, compute ms | GFLOP/frame | GFLOP/s | % of peak | vs reference (p50, min-max) |")


def summary_header() -> str:
    """The markdown table's header and rule (rows: :func:`summary_row`)."""
    return HEADER + "\n|" + "---|" * (HEADER.count("|") - 1)


def summary_row(r: dict) -> str:
    if r.get("speedup_vs_reference"):
        speedup = f"{r['speedup_vs_reference']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
    else:
        speedup = "-"
    return (f"| {r['model']} | {r.get('mode', 'streaming')} | {r['size']} | {r['precision']} | {r['backend']} | "
            f"{r['device']} | {r['latency_ms']:.1f} | {r['latency_p95_ms']:.1f} | "
            f"{r['latency_min_ms']:.1f}-{r['latency_max_ms']:.1f} | {r['fps']:.2f} | "
            f"{r.get('first_depth_frames', 1)}, {r.get('first_depth_ms', r['latency_ms']):.0f} | "
            f"{r['gflop_per_frame']:.1f} | {r['gflops_achieved']:.1f} | "
            f"{100 * r['fraction_of_peak']:.0f}% | {speedup} |")


def summarize(records: list[dict]) -> str:
    """A markdown table of bench records."""
    return "\n".join([summary_header()] + [summary_row(r) for r in records])
