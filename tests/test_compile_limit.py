"""torch.compile(dynamic=False) compiles once per input form and, past torch's recompile limit,
runs new forms uncompiled with nothing but a log line: the compile backend says so (issue 21 s6)."""

import warnings

import pytest
import torch
import torch._dynamo

from flashdepth import FlashDepth
from flashdepth.inference.backends import CompiledRunner

from conftest import TINY, randomize


def test_compile_backend_warns_once_past_the_recompile_limit(monkeypatch):
    calls = []

    def fake_compile(fn, **kwargs):  # no Inductor on a CPU test: count the calls instead
        assert kwargs.get("dynamic") is False
        return lambda *a: calls.append(tuple(a[0].shape)) or fn(*a)

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 4)
    runner = CompiledRunner(randomize(FlashDepth(TINY["s"]).eval(), seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing said while within the limit
        with torch.no_grad():
            for size in ((56, 56), (56, 70)):
                state = None
                for _ in range(2):  # frame 1 (no state) and frame 2 (a state) are two forms
                    _, state = runner(torch.rand(1, 3, *size), state)
    assert len(calls) == 4
    with pytest.warns(RuntimeWarning, match="recompile limit \\(4\\)") as record, torch.no_grad():
        runner(torch.rand(1, 3, 70, 56))
        runner(torch.rand(1, 3, 70, 70))  # still past the limit: no second warning
    assert len(record) == 1 and len(calls) == 6
