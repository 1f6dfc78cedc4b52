"""GPU-only checks (skipped without CUDA): pinned staging, autocast and compiled paths against fp32 eager."""

import numpy as np
import pytest
import torch

from flashdepth import FlashDepth
from flashdepth.backends import get_backend
from flashdepth.session import DepthSession

from conftest import TINY, frames, randomize

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_session_on_cuda_equals_cpu_in_fp32():
    model = randomize(FlashDepth(TINY["s"])).eval()
    images = [(np.random.default_rng(i).random((140, 196, 3)) * 255).astype(np.uint8) for i in range(3)]
    cpu = list(DepthSession(model, device="cpu").run(images))
    gpu = list(DepthSession(model, device="cuda", precision="fp32").run(images))  # through pinned staging
    for a, b in zip(cpu, gpu):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-4


@pytest.mark.parametrize("backend", ["compile", "cudagraphs"])
def test_compiled_backends_equal_eager_while_streaming(backend):
    model = randomize(FlashDepth(TINY["full"])).eval().cuda()
    runner = get_backend(backend).create(randomize(FlashDepth(TINY["full"])).eval(), (140, 196), torch.device("cuda"))
    video = frames(4).cuda()
    with torch.inference_mode():
        s1 = s2 = None
        for t in range(4):
            a, s1 = model(video[:, t], s1)
            b, s2 = runner(video[:, t].clone(), s2)
            assert (a - b).norm() / a.norm() < 1e-3


def test_bf16_autocast_close_to_fp32():
    model = randomize(FlashDepth(TINY["s"])).eval().cuda()
    x = frames(1).cuda()[:, 0]
    with torch.inference_mode():
        ref, _ = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low, _ = model(x)
    assert (ref - low.float()).norm() / ref.norm() < 0.05
