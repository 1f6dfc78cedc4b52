"""Windowed (offline) inference: Video Depth Anything's algorithm, streamed in bounded memory.

The oracle is the official ``infer_video_depth`` (DepthAnything/Video-Depth-Anything), run in a
subprocess on the same stand-in model; it is skipped unless ``VDA_OFFICIAL`` names a checkout of
that repository. The other tests need nothing: they check properties worked out by hand (a
stand-in whose windows disagree only by a scale and a shift gives back window 0's depth for every
frame; the slots of every window; how far ahead the input is read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flashdepth.config import InputConfig
from flashdepth.errors import FrameSizeChangedError, OptionValueError
from flashdepth.inference.preprocess import normalise, to_float_rgb
from flashdepth.inference.windowed import WindowOptions, windowed_depths

HERE = Path(__file__).parent
OFFICIAL = os.environ.get("VDA_OFFICIAL", "")
H, W = 28, 42  # multiples of 14 with a short side of 28: the official transform at input_size=28 leaves them as they are


def standin(x: torch.Tensor) -> torch.Tensor:
    """A window model whose depths couple the frames of a window: (B, T, 3, h, w) -> (B, T, h/2, w/2).

    depth = f(frame) scaled and shifted by the window's mean, plus a drift over the slots, so the
    same frame gets another depth in another window (the alignment has work to do); some values
    are negative (the clipping has work to do); the output is half the input's size (the resizing
    to the frame's size has work to do). Its values spread widely around their mean, as depth maps
    do: the official code fits the scale and shift with float32 sums and this runner with float64
    ones, and a narrow spread (an ill-conditioned fit) would magnify that rounding difference."""
    b, t = x.shape[:2]
    small = F.avg_pool2d(x.flatten(0, 1), 2).unflatten(0, (b, t))  # (B, T, 3, h/2, w/2)
    f = 1.4 * small[:, :, 0] - 0.8 * small[:, :, 1] + 0.6 * small[:, :, 2].square() + 1.0  # (B, T, h/2, w/2)
    g = x.mean(dim=(1, 2, 3, 4)).view(b, 1, 1, 1)  # the window's mean
    slot = torch.linspace(0.0, 1.0, t, dtype=x.dtype).view(1, t, 1, 1)
    return f * (1.0 + 0.5 * torch.tanh(g)) + 0.3 * g + 0.2 * slot


def video(n: int, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: a random texture drifting sideways, with noise (every frame differs)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(H, W + n, 3))
    noise = rng.integers(-20, 21, size=(n, H, W, 3))
    return np.stack([np.clip(texture[:, i:i + W] + noise[i], 0, 255) for i in range(n)]).astype(np.uint8)


def prepare(frame: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """The package's own preparation of a frame at its own size (no resizing): ImageNet normalisation."""
    return normalise(to_float_rgb(torch.from_numpy(frame)), (H, W), InputConfig())[0], (H, W)  # (3, H, W)


def ours(frames: np.ndarray, align: bool = True) -> np.ndarray:
    """(n, H, W) float32: the windowed runner with the stand-in."""
    out = [d.numpy() for _, d in windowed_depths(list(frames), standin, prepare, WindowOptions(align=align))]
    return np.stack(out)


# --------------------------------------------------------------------- the official code as oracle
OFFICIAL_SCRIPT = r"""
import importlib.util, json, sys, types
import numpy as np
# The official module imports these at its top for its model and transforms; the function compared
# needs none of them but Compose and cv2.resize, which the frames here (already multiples of 14 at
# the size asked for) leave as they are.
cv2 = types.ModuleType("cv2"); cv2.INTER_NEAREST, cv2.INTER_CUBIC, cv2.INTER_AREA = 0, 2, 3
def _resize(image, size, interpolation=None):
    assert image.shape[1::-1] == tuple(size), (image.shape, size)  # the test's frames need no resizing
    return image
cv2.resize = _resize; sys.modules["cv2"] = cv2
tv = types.ModuleType("torchvision"); tvt = types.ModuleType("torchvision.transforms")
class Compose:
    def __init__(self, steps): self.steps = steps
    def __call__(self, sample):
        for step in self.steps: sample = step(sample)
        return sample
tvt.Compose = Compose; tv.transforms = tvt; sys.modules["torchvision"] = tv; sys.modules["torchvision.transforms"] = tvt
for name in ("easydict", "einops"):
    if importlib.util.find_spec(name) is None:
        m = types.ModuleType(name); m.EasyDict = dict; m.rearrange = m.repeat = None; sys.modules[name] = m
sys.path.insert(0, sys.argv[1])
from video_depth_anything.video_depth import VideoDepthAnything
import test_windowed as t

class Standin:  # what infer_video_depth uses of its model: forward over a window, and whether it is metric
    def __init__(self, metric): self.metric = metric
    def forward(self, x): return t.standin(x)

out = {}
for n in [7, 22, 32, 33, 54, 100]:
    frames = t.video(n, seed=n)
    for metric in (False, True):
        ref, _ = VideoDepthAnything.infer_video_depth(Standin(metric), frames, 30, input_size=t.H, device="cpu", fp32=True)
        got = t.ours(frames, align=not metric)
        rel = float(np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref)) if got.shape == ref.shape else None
        out[f"{n} frames {'metric' if metric else 'relative'}"] = [rel, list(ref.shape), list(got.shape)]

# The same arithmetic as the official code where the two differ only in rounding (its float64
# normalisation, its float32 least-squares sums) must give the same bits: the algorithm is the same.
import torch
from utils.util import compute_scale_and_shift
import flashdepth.inference.windowed as windowed
def official_fit(p, q):  # (a, H, W) each
    s, u = compute_scale_and_shift(p.numpy().reshape(-1, p.shape[-1]), q.numpy().reshape(-1, p.shape[-1]),
                                   np.ones((p.shape[0] * p.shape[1], p.shape[2])) == 1)
    return float(s), float(u)
def official_prepare(frame):
    x = (frame.astype(np.float32) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]  # float64, as the official
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)), (t.H, t.W)
windowed._scale_and_shift = official_fit
exact = 0.0
for n in [7, 33, 100]:
    frames = t.video(n, seed=n)
    ref, _ = VideoDepthAnything.infer_video_depth(Standin(False), frames, 30, input_size=t.H, device="cpu", fp32=True)
    got = np.stack([d.numpy() for _, d in windowed.windowed_depths(list(frames), t.standin, official_prepare)])
    exact = max(exact, float(np.abs(got - ref).max()))
out["same rounding: largest difference"] = [exact, [], []]
print(json.dumps(out))
"""


@pytest.mark.skipif(not (OFFICIAL and (Path(OFFICIAL) / "video_depth_anything" / "video_depth.py").is_file()),
                    reason="official Video Depth Anything code not found: set VDA_OFFICIAL to a checkout of "
                           "DepthAnything/Video-Depth-Anything")
def test_windowed_equals_the_official_infer_video_depth():
    """Relative and metric (no alignment), from shorter than a window to several windows with padding."""
    result = subprocess.run([sys.executable, "-c", OFFICIAL_SCRIPT, OFFICIAL], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(HERE), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    print(errors)
    assert len(errors) == 13
    assert errors.pop("same rounding: largest difference")[0] == 0.0
    for case, (rel, ref_shape, got_shape) in errors.items():
        assert got_shape == ref_shape, case
        assert rel <= 1e-6, f"{case}: relative L2 {rel:.2e}"


# --------------------------------------------------------------------- hand-checked properties
def affine_per_window(x: torch.Tensor) -> torch.Tensor:
    """Depth f(frame) (the frame's mean, positive), scaled and shifted by an amount of the window's
    own: windows agree up to a scale and a shift, which the alignment must undo."""
    f = x.mean(dim=2) + 3.0  # (B, T, h, w)
    g = x.mean(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1)  # the window's mean
    return f * (1.5 + torch.tanh(g)) + 2.0 * g


@pytest.mark.parametrize("n", [1, 7, 22, 23, 32, 33, 54, 100])
def test_windows_that_agree_up_to_scale_and_shift_give_the_first_windows_depth(n):
    frames = video(n, seed=n)
    xs = [prepare(f)[0] for f in frames]  # (3, H, W) each
    first = affine_per_window(torch.stack(xs[:32] + [xs[-1]] * max(0, 32 - n))[None])[0]  # (32, H, W) window 0
    g0 = torch.stack(xs[:32] + [xs[-1]] * max(0, 32 - n)).mean()
    expected = torch.stack([(x.mean(0) + 3.0) * (1.5 + torch.tanh(g0)) + 2.0 * g0 for x in xs])  # (n, H, W)
    assert torch.allclose(expected[:min(n, 32)], first[:min(n, 32)], rtol=1e-5, atol=1e-5)  # the oracle is window 0
    items = list(frames)
    out = list(windowed_depths(items, affine_per_window, prepare))
    assert [id(item) for item, _ in out] == [id(f) for f in items]  # every frame once, in order
    got = torch.stack([d for _, d in out])
    assert got.shape == (n, H, W)
    rel = (got - expected).norm() / expected.norm()
    assert rel < 1e-5, f"relative L2 {rel:.2e}"
    if n > 24:  # frames 24.. take depths of window 1: without the alignment they keep its own scale
        raw = torch.stack([d for _, d in windowed_depths(list(frames), affine_per_window, prepare,
                                                         WindowOptions(align=False))])
        assert (raw - expected).norm() / expected.norm() > 1e-3


def test_a_model_whose_windows_agree_gives_each_frames_own_depth_without_alignment():
    """Metric mode (no alignment) with a per-frame model: every depth is f(frame)."""
    frames = video(60)
    per_frame = lambda x: x.mean(dim=2) + 3.0  # (B, T, h, w): no coupling between frames
    got = torch.stack([d for _, d in windowed_depths(list(frames), per_frame, prepare, WindowOptions(align=False))])
    expected = torch.stack([prepare(f)[0].mean(0) + 3.0 for f in frames])
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [5, 32, 54, 60])
def test_each_window_holds_the_key_frames_of_the_one_before_then_the_next_frames_padded_at_the_end(n):
    """Frame i is the constant image i: each window's slots say which frames the model saw."""
    seen = []

    def record(x):
        seen.append([round(v) for v in x[0, :, 0, 0, 0].tolist()])
        return x.mean(dim=2)

    items = list(range(n))
    got = [i for i, _ in windowed_depths(items, record, lambda i: (torch.full((3, 2, 2), float(i)), (2, 2)))]
    assert got == items
    step, windows = 22, -(-n // 22)
    assert len(seen) == windows
    for w, slots in enumerate(seen):
        start = w * step
        real = [min(start + s, n - 1) for s in range(32)]  # padding: the last frame again
        if w == 0:
            assert slots == real
        else:
            # slot 0: the video's first frame; slot 1: slot 12 of the window before; 2..9: its last eight
            assert slots[:10] == [0, start - step + 12] + real[2:10]
            assert slots[10:] == real[10:]


def test_the_input_is_read_at_most_one_window_ahead_and_frames_are_let_go():
    """The bounded-memory promise: when the depth of frame i comes out, at most 32 frames after
    it have been read, and the frames (items) held by the runner are at most one window."""
    alive = set()
    pulled = [0]

    class Item:
        def __init__(self, i):
            self.i = i
            alive.add(i)
            weakref.finalize(self, alive.discard, i)

    def source(n):
        for i in range(n):
            pulled[0] += 1
            yield Item(i)

    most_ahead = most_alive = 0
    n = 200
    for k, (item, depth) in enumerate(windowed_depths(source(n), lambda x: x.mean(dim=2),
                                                      lambda it: (torch.full((3, 4, 4), float(it.i)), (8, 8)))):
        assert item.i == k and depth.shape == (8, 8)
        most_ahead = max(most_ahead, pulled[0] - k)
        del item
        most_alive = max(most_alive, len(alive))
    assert pulled[0] == n
    assert most_ahead == 32  # window 0: all 32 frames are read before depth 0 is out
    assert most_alive <= 32
    assert not alive


def test_depths_are_new_tensors_and_a_frame_size_change_is_an_error():
    out = list(windowed_depths(range(40), lambda x: x.mean(dim=2), lambda i: (torch.zeros(3, 2, 2) + i, (2, 2))))
    assert out[0][1].untyped_storage().nbytes() == 2 * 2 * 4  # not a view of a whole window
    with pytest.raises(FrameSizeChangedError):
        list(windowed_depths(range(40), lambda x: x.mean(dim=2),
                             lambda i: (torch.zeros(3, 2, 2), (2, 2) if i < 30 else (4, 4))))


def test_an_empty_input_gives_nothing_and_runs_nothing():
    calls = []
    assert list(windowed_depths([], lambda x: calls.append(x), prepare)) == []
    assert calls == []


@pytest.mark.parametrize("bad", [dict(overlap=0), dict(overlap=32), dict(keyframes=(0, 1)),
                                 dict(keyframes=(0, 12, 24, 25, 26, 27, 28, 29, 30, 32)), dict(interpolate=1),
                                 dict(interpolate=10), dict(length=16, overlap=10, interpolate=8,
                                                            keyframes=(0, 5, 8, 9, 10, 11, 12, 13, 14, 15))])
def test_window_options_that_cannot_work_are_refused(bad):
    with pytest.raises(OptionValueError):
        WindowOptions(**bad)


# --------------------------------------------------------------------- in runs: RunOptions.mode, run --mode
class WindowedStandin:
    """A model with both modes, as Video Depth Anything's: ``forward_window`` is :func:`standin`;
    the streaming call gives each frame alone to it (a window of one)."""

    def __init__(self, config=None):
        from conftest import TINY

        self.config = config or TINY["dav2"].replace(name="tiny-windowed")
        self.windows = 0

    def min_input_size(self):
        return 14

    def forward_window(self, frames):  # (B, T, 3, h, w) -> (B, T, h/2, w/2)
        self.windows += 1
        return standin(frames)

    def __call__(self, frame, state=None):  # (B, 3, h, w) -> (B, h/2, w/2)
        return standin(frame[:, None])[:, 0], state


def _folder(tmp_path: Path, n: int, size=(56, 84)) -> list[str]:
    from PIL import Image

    from media import make_frames

    paths = []
    for i, image in enumerate(make_frames(n, *size)):
        paths.append(str(tmp_path / "in" / f"{i:04d}.png"))
        Path(paths[-1]).parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(paths[-1])
    return paths


def _expected(paths: list[str], size=(56, 84)) -> np.ndarray:
    """The depths of the runner called directly on the decoded frames (frames a multiple of 14: no resizing)."""
    from PIL import Image

    images = [np.array(Image.open(p).convert("RGB")) for p in paths]
    prep = lambda image: (normalise(to_float_rgb(torch.from_numpy(image)), size, InputConfig())[0], size)
    return np.stack([d.numpy() for _, d in windowed_depths(images, standin, prep)])


def test_run_to_folder_in_windowed_mode_writes_the_windowed_depths(tmp_path):
    from flashdepth.apps.pipeline import RunOptions, run_to_folder
    from flashdepth.inference.session import DepthSession
    from flashdepth.io.sources import ImageSource

    paths = _folder(tmp_path, 50)
    model = WindowedStandin()
    stats = run_to_folder(ImageSource(paths, "fifty", 10), DepthSession(model, device="cpu"), tmp_path / "out",
                          RunOptions(outputs=("raw",), mode="windowed"))
    written = np.load(tmp_path / "out" / "depth.npy")
    assert stats.frames == 50 and model.windows == 3 and len(stats.latencies_ms) == 50
    assert written.shape == (50, 56, 84)
    assert np.array_equal(written, _expected(paths))
    # the default is streaming: the same model, frame by frame, gives other depths (no window coupling)
    run_to_folder(ImageSource(paths, "fifty", 10), DepthSession(model, device="cpu"), tmp_path / "streamed",
                  RunOptions(outputs=("raw",)))
    assert model.windows == 3 and not np.allclose(np.load(tmp_path / "streamed" / "depth.npy"), written)


class _LiveSource:
    name, live, fps, time_base, frame_count = "webcam:0", True, 30, 1 / 30, None

    def __init__(self):
        self.closed = False

    def __iter__(self):
        raise AssertionError("a windowed run must refuse a live source before reading it")

    def close(self):
        self.closed = True


def test_a_live_source_or_a_model_without_windows_in_windowed_mode_is_an_error_naming_streaming(tmp_path):
    from flashdepth.apps.pipeline import RunOptions, run_to_folder
    from flashdepth.errors import InferenceModeError
    from flashdepth.inference.session import DepthSession
    from flashdepth.io.sources import ImageSource

    source = _LiveSource()
    with pytest.raises(InferenceModeError, match=r"mode='windowed' .*webcam:0 is a live source; use mode='streaming'"):
        run_to_folder(source, DepthSession(WindowedStandin(), device="cpu"), tmp_path / "out",
                      RunOptions(outputs=("raw",), mode="windowed"))
    assert source.closed and not (tmp_path / "out").exists()  # nothing left behind
    per_frame = WindowedStandin()
    per_frame.forward_window = None  # a model with the streaming call only
    with pytest.raises(InferenceModeError, match=r"window forward \(forward_window\).*use mode='streaming'"):
        run_to_folder(ImageSource(_folder(tmp_path, 3), "three", 10), DepthSession(per_frame, device="cpu"),
                      tmp_path / "out2", RunOptions(outputs=("raw",), mode="windowed"))
    assert not (tmp_path / "out2").exists()


def test_the_mode_option_is_checked_against_its_table():
    from flashdepth.apps.pipeline import RunOptions
    from flashdepth.errors import InferenceModeError, UnknownNameError
    from flashdepth.inference.modes import MODES

    assert list(MODES) == ["streaming", "windowed"]
    with pytest.raises(UnknownNameError, match="streaming, windowed"):
        RunOptions(mode="offline")
    with pytest.raises(InferenceModeError, match="reset_on_cut=True"):
        RunOptions(mode="windowed", reset_on_cut=True)
    assert RunOptions().mode == "streaming"


def test_cli_run_mode_windowed_on_a_folder_and_its_errors_in_flags(tmp_path, monkeypatch, capsys):
    from flashdepth.inference.session import DepthSession, SessionSpec
    from flashdepth.inference.modes import MODES
    from flashdepth_cli.main import _parser, main

    paths = _folder(tmp_path, 30)
    monkeypatch.setattr(SessionSpec, "open", lambda self, *a, **k: DepthSession(WindowedStandin(), device="cpu"))
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--save", "raw", "--mode", "windowed",
                 "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "out" / "depth.npy"), _expected(paths))
    capsys.readouterr()
    assert main(["run", "lavfi:testsrc=size=56x42:rate=5", "-o", str(tmp_path / "live"), "--mode", "windowed",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--mode windowed reads frames ahead" in err and "use --mode streaming" in err and "mode=" not in err
    assert not (tmp_path / "live").exists()
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "o3"), "--mode", "windowed", "--reset-on-cut",
                 "--quiet"]) == 2
    assert "--mode windowed with --reset-on-cut has no stream state" in capsys.readouterr().err
    for command in ("run", "batch"):  # the choices come from the table
        sub = _parser()._subparsers._group_actions[0].choices[command]
        action = next(a for a in sub._actions if "--mode" in a.option_strings)
        assert list(action.choices) == list(MODES) and action.default == "streaming"


def test_a_frame_of_another_size_or_a_non_finite_window_names_its_frame(tmp_path):
    from PIL import Image

    from flashdepth.errors import NonFiniteOutputError
    from flashdepth.inference.session import DepthSession
    from flashdepth.inference.windowed import WindowedRun

    paths = _folder(tmp_path, 45)
    Image.new("RGB", (70, 56)).save(paths[40])  # frame 40 is read with window 1, after 22 depths are out
    frames = [np.array(Image.open(p).convert("RGB")) for p in paths]
    out = []
    with pytest.raises(FrameSizeChangedError) as info:
        for depth in WindowedRun(DepthSession(WindowedStandin(), device="cpu")).run(frames):
            out.append(depth)
    assert info.value.index == 40 and info.value.size == (56, 70) and len(out) == 24

    class Broken(WindowedStandin):
        def forward_window(self, frames):
            return super().forward_window(frames) * (float("nan") if self.windows == 2 else 1.0)

    with pytest.raises(NonFiniteOutputError, match="window ending at frame 44"):
        list(WindowedRun(DepthSession(Broken(), device="cpu")).run(frames[:40] + frames[41:] + frames[:1]))
