"""Backends run the model as the model runs: compiled streaming equals eager, without recompiling."""

import pytest
import torch

import flashdepth
from flashdepth import FlashDepth
from flashdepth.inference.backends import BACKENDS, get_backend

from conftest import TINY, frames, randomize


def test_compiled_stream_equals_eager_and_compiles_once_per_size():
    """The frame counter of the stream state stays outside the graph: frame 3 must not
    recompile (it once did, every frame, which made compiled streaming 45x slower)."""
    from torch._dynamo.utils import counters

    model = randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False)
    runner = get_backend("compile").create(randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False),
                                           torch.device("cpu"))
    video = frames(5)
    counters.clear()
    with torch.inference_mode():
        s1 = s2 = None
        for t in range(5):
            a, s1 = model(video[:, t], s1)
            b, s2 = runner(video[:, t], s2)
            assert (a - b).norm() / a.norm() < 1e-4
            if t == 1:
                compiled = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == compiled  # frames 2-4: no new graph
    assert s2.frames == 5 and runner.config == model.config


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(flashdepth.UnknownNameError, match="choose one of: " + ", ".join(BACKENDS)):
        get_backend("tensorrt-magic")


PROBE = r"""
import json, sys
from flashdepth.export.runtimes import GRAPH_RUNTIMES, GraphRuntime
GRAPH_RUNTIMES["probe-rt"] = GraphRuntime("probe-rt", "probe runtime row", "onnx", (("json", "json"),),
                                          lambda path, device: None, int8=True)
from flashdepth.inference.backends import BACKENDS, graph_file_backends
from flashdepth_cli.main import _parser
torch_loaded = "torch" in sys.modules
help_text = " ".join(_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
print(json.dumps({"torch": torch_loaded, "rows": {n: [b.runtime, b.int8, [list(x) for x in b.needs]]
                                                  for n, b in BACKENDS.items()},
                  "files": graph_file_backends(), "help": help_text}))
"""


def test_graph_backends_come_from_the_runtime_table_without_torch():
    """A row added to GRAPH_RUNTIMES becomes a backend (and its -int8 twin) and a --backend choice with
    no other change; the tables load without torch (the command line reads them at start)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert not seen["torch"]
    runtime, int8, needs = seen["rows"]["probe-rt"]
    assert runtime == "probe-rt" and not int8
    assert ["json", "json", "onnx"] in needs and ["onnxscript", "onnxscript", "onnx"] in needs  # runs and exports
    assert seen["rows"]["probe-rt-int8"][:2] == ["probe-rt", True]
    assert seen["rows"]["compile"][0] is None
    assert "probe-rt" in seen["files"] and "probe-rt-int8" not in seen["files"] and "compile" not in seen["files"]
    assert "probe-rt" in seen["help"] and "probe runtime row" in seen["help"]


def test_a_graph_file_refuses_a_backend_that_cannot_run_graphs(tmp_path):
    """It once fell back to onnxruntime without a word; the error names the backends that can."""
    from flashdepth.inference.backends import graph_file_backends
    from flashdepth.errors import GraphOptionError
    from flashdepth.inference.session import SessionSpec
    from flashdepth_cli.common import cli_message

    for name in ("torch", "compile", "cudagraphs", "onnxruntime-int8"):
        spec = SessionSpec(checkpoint=str(tmp_path / "g.onnx"), backend=name)
        with pytest.raises(GraphOptionError) as caught:
            spec.open("cpu")
        text = str(caught.value)
        assert text.startswith(f"backend={name!r}") and ", ".join(graph_file_backends()) in text
        assert cli_message(caught.value).startswith(f"--backend {name} cannot run the graph file")
    with pytest.raises(flashdepth.UnknownNameError, match="unknown backend 'nope'"):
        SessionSpec(checkpoint=str(tmp_path / "g.onnx"), backend="nope").open("cpu")


def test_an_unknown_graph_runtime_names_the_backend_flag():
    from flashdepth.export import GRAPH_RUNTIMES, get_runtime
    from flashdepth_cli.common import cli_message

    with pytest.raises(flashdepth.UnknownNameError) as caught:
        get_runtime("tensorrt-magic")
    assert ", ".join(GRAPH_RUNTIMES) in str(caught.value)
    message = cli_message(caught.value)
    assert message.startswith("--backend:") and "--engine" not in message


def test_the_frame_count_has_one_home():
    """StreamState.advance counts frames for the model and every runner; no other module adds to a
    state's count (it once did in three places, which could disagree)."""
    import re
    from pathlib import Path

    from flashdepth.models import StreamState

    ssm = (torch.zeros(1, 2, 3, 4),)
    first = StreamState.advance(None, ssm)
    assert first.frames == 1 and first.ssm[0] is ssm[0]
    assert StreamState.advance(first, [torch.ones(1)], 4).frames == 5
    assert StreamState.advance(first, None) is None  # per-frame models carry no state
    root = Path(__file__).resolve().parent.parent / "flashdepth"
    counting = [str(p.relative_to(root)) for p in root.rglob("*.py")
                if re.search(r"\bstate\.frames\)?\s*\+[^=]", p.read_text())]
    assert counting == ["models/flashdepth.py"], counting


def test_every_runner_follows_the_runner_protocol():
    from flashdepth.inference.backends import CompiledRunner
    from flashdepth.models import Runner

    model = FlashDepth(TINY["s"]).eval()
    assert isinstance(model, Runner)
    assert isinstance(CompiledRunner(model), Runner)  # torch.compile compiles on the first call, not here
    assert not isinstance(object(), Runner)
    pytest.importorskip("onnxscript")
    from flashdepth.export import OnnxRunner

    assert isinstance(OnnxRunner.from_model(model, "onnxruntime"), Runner)  # exports on the first frame, not here


class _GraphMemory:
    """A stand-in for torch.compile(mode="reduce-overhead") on CUDA: outputs are written into
    buffers the graph owns, and every call first overwrites them all (a replay, or the warm-up of
    another graph under cudagraph trees), as the real one does to memory a caller still holds."""

    def __init__(self, fn, mode=None, dynamic=None):
        self.fn, self.mode, self.buffers = fn, mode, {}

    def __call__(self, video, ssm):
        for buffer in self.buffers.values():
            buffer.fill_(float("nan"))
        depth, new_ssm = self.fn(video, ssm)
        outs = [depth, *(new_ssm or ())]
        for i, out in enumerate(outs):
            key = (ssm is None, i)
            if key not in self.buffers or self.buffers[key].shape != out.shape:
                self.buffers[key] = torch.empty_like(out)
            self.buffers[key].copy_(out)
        held = [self.buffers[(ssm is None, i)] for i in range(len(outs))]
        return held[0], (tuple(held[1:]) if new_ssm is not None else None)


def test_cuda_graph_outputs_are_copied_out(monkeypatch):
    """Issue 21: the state returned by a CUDA-graph step was graph memory, overwritten before the
    next frame read it. What the runner returns must never alias the graph's buffers, and streaming
    through overwritten buffers must still equal eager."""
    memories, steps = [], []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: memories.append(_GraphMemory(fn, **kw)) or memories[-1])
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    model = randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False)
    runner = get_backend("cudagraphs").create(model, torch.device("cpu"))
    assert memories[0].mode == "reduce-overhead" and runner.copy_out
    video = frames(3)
    kept, s1, s2 = [], None, None
    with torch.inference_mode():
        for t in range(3):
            ref, s1 = model(video[:, t], s1)
            depth, s2 = runner(video[:, t], s2)
            owned = {b.untyped_storage().data_ptr() for b in memories[0].buffers.values()}
            assert depth.untyped_storage().data_ptr() not in owned
            assert not owned & {s.untyped_storage().data_ptr() for s in s2.ssm}
            assert torch.allclose(depth, ref, rtol=1e-5, atol=1e-6)
            kept.append((depth, ref))
    assert all(torch.allclose(d, r, rtol=1e-5, atol=1e-6) for d, r in kept)  # earlier frames were not overwritten
    assert s2.frames == 3 and len(steps) == 3
    assert not get_backend("compile").create(model, torch.device("cpu")).copy_out  # fresh outputs there
