"""What a new user runs first: the README's snippet as written, clear errors, a fast CLI."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth import FlashDepth
from flashdepth.inference.session import DepthSession
from flashdepth.inference.weights import save_checkpoint

from conftest import TINY, randomize

SNIPPET = """
import os, sys, torch, flashdepth
def rss_mib():                                                   # resident now (not the peak: transient
    with open("/proc/self/statm") as f:                          # buffers of the first frames hide growth)
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
model = flashdepth.load_model(sys.argv[1])                       # as the README: no torch.no_grad()
if sys.argv[2] == "grad":
    model.requires_grad_(True)                                   # what a training user opts into
frames = [torch.randn(1, 3, 280, 504) for _ in range(4)]
state = None
rss = []
for i in range(int(sys.argv[3])):
    depth, state = model(frames[i % 4], state)
    if i in (9, int(sys.argv[3]) - 1):
        rss.append(rss_mib())
print(depth.requires_grad, rss[1] - rss[0])
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(randomize(FlashDepth(TINY["s"])), tmp_path_factory.mktemp("c") / "tiny.pth")


def _snippet(ckpt, mode: str, frames: int) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", SNIPPET, str(ckpt), mode, str(frames)], capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident size from /proc")
def test_readme_snippet_streams_in_flat_memory(ckpt):
    """The README loop as written, without torch.no_grad(): loaded models build no graph, so the
    state does not drag every earlier frame's activations along."""
    requires_grad, growth_mib = _snippet(ckpt, "inference", 50)
    assert not requires_grad and growth_mib < 40, growth_mib
    # The same loop with gradients enabled does grow: the measurement can see a leak.
    requires_grad, leaked_mib = _snippet(ckpt, "grad", 50)
    assert requires_grad and leaked_mib > 3 * max(growth_mib, 10), (growth_mib, leaked_mib)


def test_loaded_model_requires_no_grad_and_state_has_no_graph(ckpt):
    model = flashdepth.load_model(ckpt)
    assert not any(p.requires_grad for p in model.parameters())
    _, state = model(torch.randn(1, 3, 140, 196))
    assert all(s.grad_fn is None and not s.requires_grad for s in state.ssm)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_clear_error(ckpt):
    with pytest.raises(flashdepth.DeviceUnavailableError, match="device='cuda'.*no CUDA device.*device='cpu'"):
        flashdepth.load_model(ckpt, device="cuda")
    with pytest.raises(flashdepth.DeviceUnavailableError):
        DepthSession(flashdepth.load_model(ckpt), device="cuda")
    from flashdepth_cli.main import main

    assert main(["run", "x.mp4", "-o", "out", "--checkpoint", str(ckpt), "--device", "cuda"]) == 2


def test_bf16_runs_on_cpu_close_to_fp32(ckpt):
    model = flashdepth.load_model(ckpt)
    image = (np.random.default_rng(0).random((140, 196, 3)) * 255).astype(np.uint8)
    fp32 = DepthSession(model, device="cpu").step(image)
    bf16 = DepthSession(model, device="cpu", precision="bf16").step(image)
    assert bf16.dtype == np.float32 and np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32) < 0.05


def test_cli_starts_without_importing_torch_and_has_a_version():
    code = textwrap.dedent("""
        import sys, flashdepth_cli.main as m
        m._parser()
        print('torch' in sys.modules)
    """)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    out = subprocess.run([sys.executable, "-m", "flashdepth_cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"flashdepth {flashdepth.__version__}"


def test_every_subcommand_help_teaches_with_a_description_and_examples(capsys):
    from flashdepth_cli.main import COMMANDS, main

    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text and f"flashdepth {name}" in text.split("examples:")[1], name
