"""Backends run the model as the model runs: compiled streaming equals eager, without recompiling."""

import pytest
import torch

import flashdepth
from flashdepth import FlashDepth
from flashdepth.backends import BACKENDS, get_backend

from conftest import TINY, frames, randomize


def test_compiled_stream_equals_eager_and_compiles_once_per_size():
    """The frame counter of the stream state stays outside the graph: frame 3 must not
    recompile (it once did, every frame, which made compiled streaming 45x slower)."""
    from torch._dynamo.utils import counters

    model = randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False)
    runner = get_backend("compile").create(randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False),
                                           (140, 196), torch.device("cpu"))
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
