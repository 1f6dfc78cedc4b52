"""`flashdepth bench` as a smoke test (no timing assertions): records, FLOPs, interleaving."""

import json

import pytest
import torch

from flashdepth.bench import flops_per_frame, time_interleaved
from flashdepth_cli.main import main


def test_bench_command_writes_every_field(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "depth-anything-v2-small", "flashdepth-s", "--size", "70x98", "--frames", "2",
                 "--warmup", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"machine", "peaks_gflops", "records"} <= set(data) and data["peaks_gflops"]["fp32"] > 0
    assert [r["model"] for r in data["records"]] == ["depth-anything-v2-small", "flashdepth-s"]
    for r in data["records"]:
        assert r["frames"] == 2 and r["latency_ms"] > 0 and r["speedup_vs_reference"] > 0
        assert r["gflop_per_frame"] > 0 and 0 < r["fraction_of_peak"] and r["size"] == "70x98"
    # the temporal module costs FLOPs: FlashDepth-S counts more than Depth Anything V2 small
    assert data["records"][1]["gflop_per_frame"] > data["records"][0]["gflop_per_frame"]
    assert "| flashdepth-s | 70x98 |" in capsys.readouterr().out


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
