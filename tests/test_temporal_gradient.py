"""The recurrent state is trainable: gradients flow from a clip's last frame back to its first
frame through the state, and nowhere else.

Any detach, no_grad or reset slipped into the stream (the model, the SSM reference scan, the state
object) would leave a FlashDepth that still runs but whose temporal module can never learn to use
the past: the loss would train it as a per-frame model. These tests are the tripwire.
"""

import pytest
import torch

from flashdepth import FlashDepth

from conftest import TINY, randomize

FRAMES, SIZE = 4, (56, 70)


def _model(variant: str) -> FlashDepth:
    # Random non-zero weights everywhere: at the published zero init the output ignores the state
    # by construction (the out projection is zero), which would make every gradient test vacuous.
    return randomize(FlashDepth(TINY[variant]), seed=3).eval()


def _video(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, FRAMES, 3, *SIZE, generator=g)  # (B, T, 3, H, W)


def _first_frame_grad(model: FlashDepth, video: torch.Tensor, carry: bool) -> torch.Tensor:
    """d(loss on the last frame) / d(first frame), streaming frame by frame."""
    frames = [video[:, t].clone().requires_grad_(True) for t in range(video.shape[1])]  # (B, 3, H, W) each
    state, depth = None, None
    for frame in frames:
        depth, state = model(frame, state if carry else None)  # depth: (B, H, W)
    (grad,) = torch.autograd.grad(depth.abs().mean(), frames[0], allow_unused=True)
    return torch.zeros_like(frames[0]) if grad is None else grad


@pytest.mark.parametrize("variant", ["s", "l", "full"])
def test_last_frame_loss_reaches_the_first_frame_through_the_state(variant):
    model = _model(variant)
    grad = _first_frame_grad(model, _video(), carry=True)
    assert torch.isfinite(grad).all()
    # The first frame influences the last only through the state: a clearly non-zero gradient.
    assert grad.abs().max() > 1e-6, f"{variant}: no gradient through the recurrent state"


@pytest.mark.parametrize("variant", ["s", "l", "full"])
def test_gradient_is_exactly_zero_when_the_state_is_reset(variant):
    model = _model(variant)
    grad = _first_frame_grad(model, _video(), carry=False)
    assert torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("variant", ["s", "full"])
def test_forward_sequence_equals_streaming_in_values_and_gradients(variant):
    model = _model(variant)
    video = _video(1)

    seq_in = video.clone().requires_grad_(True)
    depth_seq, state_seq = model.forward_sequence(seq_in)  # (B, T, H, W)
    weights = torch.linspace(0.5, 1.5, FRAMES)[None, :, None, None]  # every frame in the loss, unequally
    loss_seq = (depth_seq * weights).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    grads_seq = torch.autograd.grad(loss_seq, [seq_in, *params], allow_unused=True)

    stream_in = video.clone().requires_grad_(True)
    state, outs = None, []
    for t in range(FRAMES):
        depth, state = model(stream_in[:, t], state)
        outs.append(depth)
    depth_stream = torch.stack(outs, dim=1)  # (B, T, H, W)
    loss_stream = (depth_stream * weights).mean()
    grads_stream = torch.autograd.grad(loss_stream, [stream_in, *params], allow_unused=True)

    torch.testing.assert_close(depth_stream, depth_seq, rtol=1e-4, atol=1e-5)
    assert state.frames == state_seq.frames == FRAMES
    torch.testing.assert_close(grads_stream[0], grads_seq[0], rtol=1e-3, atol=1e-7)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, grads_seq[1:], grads_stream[1:]):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-6, msg=lambda m: f"{name}: {m}")
    # The temporal module's parameters do receive a gradient: it is trainable at all.
    assert any(a is not None and a.abs().max() > 0 for n, a in zip(names, grads_seq[1:]) if n.startswith("mamba."))


# ------------------------------------------------------------------ a recall task the module solves
def _recall_batch(g: torch.Generator, batch: int, frames: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, T, C, 2, 2): a value c shown on channel 0 of the first frame only, noise
    elsewhere; the target is c on every later frame."""
    c = torch.rand(batch, generator=g) * 2 - 1  # (B,) uniform in [-1, 1]
    feat = 0.1 * torch.randn(batch, frames, channels, 2, 2, generator=g)
    feat[:, 0, 0] = c[:, None, None]
    return feat, c


def _recall_loss(module, feat: torch.Tensor, c: torch.Tensor, carry: bool) -> torch.Tensor:
    if carry:
        out, _ = module(feat, None)  # the state crosses the T frames
    else:
        out = torch.cat([module(feat[:, t:t + 1], None)[0] for t in range(feat.shape[1])], dim=1)
    later = out[:, 1:, 1]  # (B, T-1, 2, 2): channel 1 of every frame after the first
    return ((later - c[:, None, None, None]) ** 2).mean()


@pytest.mark.parametrize("carry", [True, False])
def test_the_temporal_module_learns_to_recall_the_first_frame(carry):
    """The toy memory task at the module's level: from the published zero init, a few hundred Adam
    steps teach it to carry a value seen in the first frame to the later ones -- only through the
    state. The best answer without the state is the mean (loss = var(c) = 1/3)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and a loaded CI machine spins less
    try:
        held_out = _train_recall(carry)
    finally:
        torch.set_num_threads(threads)
    if carry:
        assert held_out < 0.1 / 3, held_out
    else:
        assert held_out > 0.8 / 3, held_out


def _train_recall(carry: bool) -> float:
    from flashdepth.config import TemporalConfig
    from flashdepth.models.temporal import TemporalModule

    torch.manual_seed(0)
    cfg = TemporalConfig(num_blocks=1, downsample=1.0, d_state=16, expand=2, headdim=8, chunk_size=64, mlp_ratio=2)
    module = TemporalModule(16, cfg)
    optim = torch.optim.Adam(module.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        feat, c = _recall_batch(g, 32, 4, 16)
        loss = _recall_loss(module, feat, c, carry)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        feat, c = _recall_batch(torch.Generator().manual_seed(2), 256, 4, 16)  # held out
        return float(_recall_loss(module, feat, c, carry))
