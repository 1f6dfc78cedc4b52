"""`flashdepth bench` as a smoke test (no timing assertions): records, FLOPs, interleaving."""

import json

import torch

from flashdepth.apps.bench import flops_per_frame, time_interleaved
from flashdepth_cli.main import main


def test_bench_command_writes_every_field(tmp_path, capsys):
    out, lines = tmp_path / "bench.json", tmp_path / "runs" / "bench.jsonl"
    assert main(["bench", "--model", "depth-anything-v2-small", "flashdepth-s", "--size", "70x98", "--frames", "2",
                 "--warmup", "1", "--json", str(out), "--jsonl", str(lines)]) == 0
    data = json.loads(out.read_text())
    assert {"machine", "peaks_gflops", "records"} <= set(data) and data["peaks_gflops"]["fp32"] > 0
    assert [r["model"] for r in data["records"]] == ["depth-anything-v2-small", "flashdepth-s"]
    for r in data["records"]:
        assert r["frames"] == 2 and r["latency_ms"] > 0 and r["speedup_vs_reference"] > 0
        assert r["gflop_per_frame"] > 0 and 0 < r["fraction_of_peak"] and r["size"] == "70x98"
    # the temporal module costs FLOPs: FlashDepth-S counts more than Depth Anything V2 small
    assert data["records"][1]["gflop_per_frame"] > data["records"][0]["gflop_per_frame"]
    text = capsys.readouterr().out
    # the header once, then each row once, as measured (not the whole table again at the end)
    assert text.count("| model | mode | size |") == 1 and text.count("| flashdepth-s | streaming | 70x98 |") == 1
    assert (text.index("| model | mode | size |") < text.index("| depth-anything-v2-small | streaming | 70x98 |")
            < text.index("| flashdepth-s |"))
    assert "warm-up 1 frame(s), then 2 timed" in text
    for r in data["records"]:  # the warm-up and the spread are recorded
        assert r["warmup"] == 1
        assert r["latency_min_ms"] <= r["latency_ms"] <= r["latency_max_ms"]
        assert r["reference_latency_min_ms"] <= r["reference_latency_ms"] <= r["reference_latency_max_ms"]
        assert r["speedup_min"] <= r["speedup_vs_reference"] <= r["speedup_max"]
    # --jsonl: one line per case, each with the machine, equal to the final JSON's records
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["model"] for r in rows] == ["depth-anything-v2-small", "flashdepth-s"] and "machine" in rows[0]
    assert rows[1]["latency_ms"] == data["records"][1]["latency_ms"]


def test_bench_rejects_sizes_off_the_patch_grid(capsys):
    assert main(["bench", "--size", "100x100"]) == 2
    assert "multiples of 14" in capsys.readouterr().err


def test_flops_of_a_known_model_match_a_hand_count():
    """ViT-S at 14x14 px is one token + cls: the count must follow the formula, not just be > 0."""
    import flashdepth

    model = flashdepth.create_model("depth-anything-v2-small").eval()
    flops = flops_per_frame(model, (14, 14), torch.device("cpu"))
    d, n = 384, 2  # width, tokens (cls + 1 patch)
    vit_linear = 12 * 2 * n * (3 * d * d + d * d + 8 * d * d)
    assert vit_linear < flops < vit_linear * 3  # plus attention, the patch conv and the DPT


def test_interleaving_rotates_order_and_keeps_each_stream_state():
    calls = []

    def runner(name):
        def run(x, state):
            calls.append(name)
            return x, (state or 0) + 1
        return run

    times = time_interleaved({"a": runner("a"), "b": runner("b")}, [torch.zeros(1)] * 4, warmup=1,
                             device=torch.device("cpu"))
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(times["a"]) == len(times["b"]) == 3


def test_peak_memory_is_read_per_runner_and_mps_is_synchronised(monkeypatch):
    import flashdepth.apps.bench as bench

    allocated = {"now": 0, "peak": 0}
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append("cuda"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: allocated.update(peak=0))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocated["peak"])

    def runner(bytes_used):
        def run(x, state):
            allocated["peak"] = max(allocated["peak"], bytes_used)
            return x, state
        return run

    peaks = {}
    time_interleaved({"small": runner(10), "large": runner(1000)}, [torch.zeros(1)] * 3, warmup=1,
                     device=torch.device("cuda"), peaks=peaks)
    assert peaks == {"small": 10, "large": 1000}  # the large runner's peak never counts for the small one
    assert len(synced) == 2 * 2 * 3
    monkeypatch.setattr(torch.mps, "synchronize", lambda: synced.append("mps"))
    bench._sync(torch.device("mps"))
    assert synced[-1] == "mps"


def test_matmul_peak_takes_the_best_of_several_sizes(monkeypatch):
    import flashdepth.apps.bench as bench

    tried = []
    real = torch.randn
    monkeypatch.setattr(torch, "randn", lambda n, m, **k: (tried.append(n), real(n, m, **k))[1])
    assert bench.matmul_peak_gflops(torch.device("cpu"), sizes=(64, 128, 256), repeats=2) > 0
    assert sorted(set(tried)) == [64, 128, 256]
    assert bench.PEAK_SIZES["cuda"][-1] >= 8192  # a GPU's rate needs large products


def test_gpu_script_reports_failures_in_a_summary_and_goes_on(tmp_path):
    """benchmarks/gpu.sh with stand-ins for the GPU tools: a failing test run and a failing
    cudagraphs bench are listed, every later step still runs, and the script exits 1."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'name, memory.total'\n")
    (fake / "pip").write_text("#!/bin/sh\nexit 0\n")
    (fake / "python").write_text(f"""#!/bin/bash
echo "$*" >> {tmp_path}/calls.txt
case "$*" in
  *"-m pytest"*) echo "1 failed"; exit 1;;
  *cudagraphs*) echo "overwritten"; exit 3;;
  *"flashdepth_cli bench"*) exit 0;;
  "-c "*) exit 0;;
  *) exec {sys.executable} "$@";;
esac
""")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PYTHONPATH": str(root)}
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (out / "summary.txt").read_text()
    assert "FAIL  gpu-tests (exit 1" in summary and "FAIL  full-2k-cudagraphs (exit 3" in summary
    for later in ("ok    full-2k ", "ok    l-518", "ok    s-2k", "ok    s-518-fp32", "ok    peers"):
        assert later in summary
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    benches = [c for c in calls if "flashdepth_cli bench" in c]
    assert all(f"--jsonl {out}/records.jsonl" in c for c in benches)
    backends = [c.split("--backend ")[1].split(" --")[0].split() for c in benches]
    assert ["cudagraphs"] in backends  # the riskiest backend runs in a call of its own
    assert sum(b.count("compile") for b in backends) == 1 and sum(b.count("cudagraphs") for b in backends) == 1
    assert "2 step(s) failed" in done.stdout


class _WindowStandIn(torch.nn.Module):
    """A windowed model: one 3x3 convolution per frame of the window (its FLOPs known exactly)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1, bias=False)
        self.windows = 0

    def forward_window(self, frames):  # (B, T, 3, H, W) -> (B, T, H, W)
        self.windows += 1
        b, t, _, h, w = frames.shape
        return self.conv(frames.flatten(0, 1)).view(b, t, h, w)


def test_windowed_mode_is_timed_per_new_frame_and_needs_a_window_first(monkeypatch, capsys):
    import pytest

    from flashdepth.apps import bench
    from flashdepth.errors import ConfigError, UnknownNameError

    stand_in = _WindowStandIn()
    monkeypatch.setattr(bench, "create_model", lambda name: stand_in)
    case = bench.BenchCase("stand-in", (28, 42), mode="windowed", window=8, overlap=3)
    r = bench.bench_case(case, frames=12, warmup=1, reference=False, peak_gflops=1.0)
    new = 8 - 3
    assert r["windows"] == 3 and r["frames"] == 3 * new  # ceil(12 / 5) windows of 5 new frames
    assert stand_in.windows == 1 + 3 + 1  # warm-up, timed, the FLOP count
    assert r["first_depth_frames"] == 8 and r["mode"] == "windowed"
    # per new frame: a window's time over its new frames
    assert abs(r["first_depth_ms"] / new - r["latency_ms"]) < 1e-6 * r["latency_ms"] + 1e-9
    # FLOPs per new frame, against the convolution's own count: 2 * k*k*C_in * H*W per frame of the window
    assert r["gflop_per_frame"] * 1e9 == pytest.approx(2 * 9 * 3 * 28 * 42 * 8 / new)
    with pytest.raises(bench.NoWindowedModeError):  # a model that only streams
        monkeypatch.setattr(bench, "create_model", lambda name: torch.nn.Identity())
        bench.bench_case(case, frames=2, reference=False, peak_gflops=1.0)
    with pytest.raises(ConfigError):
        bench.BenchCase("x", (28, 28), mode="windowed", backend="onnxruntime")
    with pytest.raises(UnknownNameError, match="streaming, windowed"):
        bench.BenchCase("x", (28, 28), mode="offline")


def test_bench_command_skips_windowed_cases_of_streaming_models(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "depth-anything-v2-small", "--size", "70x98", "--frames", "1", "--warmup", "1",
                 "--mode", "streaming", "windowed", "--no-reference", "--json", str(out)]) == 0
    records = json.loads(out.read_text())["records"]
    assert [(r["model"], r["mode"], r["first_depth_frames"]) for r in records] == [
        ("depth-anything-v2-small", "streaming", 1)]
    assert "(skipped: depth-anything-v2-small has no windowed mode)" in capsys.readouterr().out
