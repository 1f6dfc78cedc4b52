"""GPU-only checks (skipped without CUDA): pinned staging, autocast and compiled paths against fp32 eager."""

import numpy as np
import pytest
import torch

from flashdepth import FlashDepth
from flashdepth.inference.backends import get_backend
from flashdepth.inference.session import DepthSession

from conftest import TINY, frames, randomize

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


# Tolerances follow the declared precision: fp32 is IEEE fp32 on CUDA (TF32 off), so only the
# summation order differs (1e-4); tf32 keeps 10 mantissa bits (about 1e-3); bf16 keeps 8 (5e-2).
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "bf16": 5e-2}


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_session_on_cuda_equals_cpu_in_fp32(precision):
    model = randomize(FlashDepth(TINY["s"])).eval()
    images = [(np.random.default_rng(i).random((140, 196, 3)) * 255).astype(np.uint8) for i in range(3)]
    cpu = list(DepthSession(model, device="cpu").run(images))
    gpu = list(DepthSession(model, device="cuda", precision=precision).run(images))  # through pinned staging
    for a, b in zip(cpu, gpu):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < TOLERANCE[precision]


def test_bf16_session_casts_frozen_weights_once_and_stays_close():
    images = [(np.random.default_rng(i).random((140, 196, 3)) * 255).astype(np.uint8) for i in range(3)]
    cpu = list(DepthSession(randomize(FlashDepth(TINY["s"])).eval(), device="cpu").run(images))
    frozen = randomize(FlashDepth(TINY["s"])).eval().requires_grad_(False)
    session = DepthSession(frozen, device="cuda", precision="bf16")
    assert frozen.weights_dtype() == torch.bfloat16 and frozen.pretrained.norm.weight.dtype == torch.float32
    gpu = list(session.run(images))
    assert all(s.dtype == torch.float32 for s in session.state.ssm)
    for a, b in zip(cpu, gpu):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < TOLERANCE["bf16"]


@pytest.mark.parametrize("backend", ["compile", "cudagraphs"])
def test_compiled_backends_equal_eager_while_streaming(backend):
    from flashdepth.device import configure_float32

    configure_float32(torch.device("cuda"), "fp32")  # IEEE fp32 on both sides (cuDNN defaults to TF32)
    model = randomize(FlashDepth(TINY["full"])).eval().cuda()
    runner = get_backend(backend).create(randomize(FlashDepth(TINY["full"])).eval(), torch.device("cuda"))
    video = frames(4).cuda()
    with torch.inference_mode():
        s1 = s2 = None
        for t in range(4):
            a, s1 = model(video[:, t], s1)
            b, s2 = runner(video[:, t].clone(), s2)
            assert (a - b).norm() / a.norm() < TOLERANCE["fp32"]


def test_bf16_autocast_close_to_fp32():
    model = randomize(FlashDepth(TINY["s"])).eval().cuda()
    x = frames(1).cuda()[:, 0]
    with torch.inference_mode():
        ref, _ = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low, _ = model(x)
    assert (ref - low.float()).norm() / ref.norm() < TOLERANCE["bf16"]
