"""The session API: owns the stream state, takes numpy or tensor frames."""

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth import FlashDepth, InputShapeError, StreamStateError
from flashdepth.inference.preprocess import processing_size
from flashdepth.inference.session import DepthSession

from conftest import TINY, randomize
from media import make_frames


def test_session_steps_equal_model_stream_and_reset_restarts():
    model = randomize(FlashDepth(TINY["s"])).eval()
    session = DepthSession(model, device="cpu")
    images = make_frames(3)
    first = list(session.run(images))
    assert all(d.shape == (140, 196) and d.dtype == np.float32 for d in first)
    session.reset()
    again = [session.step(torch.from_numpy(images[0]))]  # tensors (H, W, 3) work too
    assert np.allclose(again[0], first[0])
    assert not np.allclose(session.step(images[1]), session.step(images[1]))  # the state moves on


def test_resolution_change_mid_stream_says_reset():
    session = DepthSession(randomize(FlashDepth(TINY["s"])), device="cpu")
    session.step(make_frames(1)[0])
    with pytest.raises(StreamStateError, match=r"call reset\(\)"):
        session.step(make_frames(1, 154, 196)[0])
    session.reset()
    assert session.step(make_frames(1, 154, 196)[0]).shape == (154, 196)


@pytest.mark.parametrize("hw,short_side,explicit,expected", [
    ((532, 952), 0, False, (532, 952)),      # native: multiples of 14 within the cap: as is
    ((540, 960), 0, False, (546, 966)),      # rounded to the nearest multiple, never below
    ((1149, 2044), 0, False, (1162, 2044)),  # 1149 -> 1162 (ceil when rounding goes below)
    ((2160, 3840), 0, False, (1162, 2044)),  # long side capped at 2044, then 1149 -> 1162
    ((540, 960), 518, False, (518, 924)),           # short side 518
    ((532, 952), 518, True, (518, 924)),            # an explicit resolution always applies
    ((532, 952), 518, False, (532, 952)),
])
def test_processing_size_policy(hw, short_side, explicit, expected):
    assert processing_size(*hw, 14, short_side, explicit=explicit) == expected


def test_processing_rule_comes_from_the_model_config_not_its_name():
    from flashdepth.inference.preprocess import model_processing_size

    full = flashdepth.get_config("flashdepth")
    renamed = full.replace(name="my-own-full-model")
    assert model_processing_size(renamed, 540, 960) == model_processing_size(full, 540, 960) == (546, 966)
    large = flashdepth.get_config("flashdepth-l").replace(name="custom")
    assert model_processing_size(large, 540, 960) == (518, 924)
    assert renamed.input.eval_preset == "2k" and large.input.eval_preset == "base"
    assert model_processing_size(renamed, 540, 960, resolution=280) == (280, 504)


# ------------------------------------------------------------------ non-finite values (issue 20 section 2)
def test_a_frame_with_a_nan_pixel_is_refused_and_the_state_stays_as_it_was():
    from flashdepth.errors import InputValueError

    model = randomize(FlashDepth(TINY["s"])).eval()
    images = make_frames(3)
    clean = list(DepthSession(model, device="cpu").run(images))
    session = DepthSession(model, device="cpu")
    session.step(images[0])
    before = session.state
    bad = images[1].astype(np.float32) / 255
    bad[5, 7, 1] = np.nan
    with pytest.raises(InputValueError, match=r"frame 1 holds 1 non-finite"):
        session.step(bad)
    bad[5, 7, 1] = np.inf
    with pytest.raises(InputValueError, match="non-finite"):
        session.step(torch.from_numpy(bad))
    assert session.state is before and session.frames == 1
    # the stream goes on as if the bad frames had never been given
    assert np.array_equal(session.step(images[1]), clean[1])
    assert np.array_equal(session.step(images[2]), clean[2])


def test_nan_weights_raise_naming_the_frame_and_keep_the_state():
    from flashdepth.errors import NonFiniteOutputError

    model = randomize(FlashDepth(TINY["s"])).eval()
    session = DepthSession(model, device="cpu")
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(float("inf"))
    with pytest.raises(NonFiniteOutputError, match="frame 0 of the stream") as caught:
        session.step(make_frames(1)[0])
    assert caught.value.index == 0 and session.state is None and session.frames == 0


class _BreaksAt:
    """A model stand-in that gives NaN depth from call ``at`` on (as an overflow would)."""

    def __init__(self, model, at: int):
        self.model, self.config, self.at, self.calls = model, model.config, at, 0

    def min_input_size(self):
        return self.model.min_input_size()

    def __call__(self, x, state=None):
        depth, state = self.model(x, state)
        self.calls += 1
        return (depth * float("nan") if self.calls > self.at else depth), state


def test_a_non_finite_output_stops_a_run_keeping_the_frames_written(tmp_path):
    from flashdepth.errors import NonFiniteOutputError
    from flashdepth.io.sources import ImageSource
    from flashdepth.apps.pipeline import RunOptions, run_to_folder
    from PIL import Image

    paths = []
    for i, image in enumerate(make_frames(5)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    model = randomize(FlashDepth(TINY["s"])).eval()
    session = DepthSession(_BreaksAt(model, at=3), device="cpu")
    with pytest.raises(NonFiniteOutputError, match="frame 3 of the stream") as info:
        run_to_folder(ImageSource(paths, "five", 10), session, tmp_path / "out", RunOptions(outputs=("raw",)))
    written = np.load(tmp_path / "out" / "depth.npy")
    assert written.shape == (3, 140, 196) and np.isfinite(written).all() and info.value.stats.frames == 3
    expected = list(DepthSession(model, device="cpu").run(make_frames(3)))
    assert np.allclose(written, np.stack(expected))


# ------------------------------------------------------------------ the Python API's errors (issue 20 section 6)
def test_session_frame_types_and_ranges():
    from flashdepth.errors import InputValueError

    model = randomize(FlashDepth(TINY["s"])).eval()
    image = make_frames(1)[0]
    expected = DepthSession(model, device="cpu").step(image)
    # every accepted dtype of the same picture gives the same depth
    for frame, tol in ((image.astype(np.float64) / 255, 1e-6), (image.astype(np.float32) / 255, 1e-6),
                       (image.astype(np.uint16) * 257, 1e-6), (torch.from_numpy(image).half() / 255, 5e-3)):
        depth = DepthSession(model, device="cpu").step(frame)
        assert np.linalg.norm(depth - expected) / np.linalg.norm(expected) < tol
    session = DepthSession(model, device="cpu")
    with pytest.raises(InputValueError, match=r"values up to 255.*divide it by 255"):
        session.step(image.astype(np.float32))  # a [0, 255] float frame
    with pytest.raises(InputShapeError, match="unsupported image dtype torch.bool"):
        session.step(image > 128)
    with pytest.raises(InputValueError, match="got list"):
        session.step(image.tolist())
    with pytest.raises(InputShapeError, match="is empty"):
        session.step(np.zeros((0, 0, 3), np.uint8))
    assert session.state is None and session.frames == 0


def test_float64_frames_are_cast_on_the_host_before_they_cross():
    seen = []

    session = DepthSession(randomize(FlashDepth(TINY["s"])).eval(), device="cpu")

    class Staging:  # stands in for the copy to a device (MPS has no float64)
        def to_device(self, frame):
            seen.append(frame.dtype)
            return frame

    session.staging = Staging()
    session.step(make_frames(1)[0].astype(np.float64) / 255)
    session.step(torch.from_numpy(make_frames(1)[0].astype(np.float64) / 255))
    assert seen == [torch.float32, torch.float32]


# ------------------------------------------------------------------ one frame in flight (issue 21 section 5)
def test_run_keeps_one_frame_in_flight_with_the_outputs_of_step():
    model = randomize(FlashDepth(TINY["s"])).eval()
    images = make_frames(4)
    session = DepthSession(model, device="cpu")
    stepped = [session.step(image) for image in images]
    events = []

    def frames():
        for i, image in enumerate(images):
            events.append(f"read {i}")
            yield image

    pipelined = DepthSession(model, device="cpu")
    out = []
    for i, depth in enumerate(pipelined.run(frames())):
        events.append(f"out {i}")
        out.append(depth)
    assert all(np.array_equal(a, b) for a, b in zip(out, stepped)) and len(out) == 4
    # frame t+1 is read (and started) before the depth of frame t is handed out; the last is flushed
    assert events == ["read 0", "read 1", "out 0", "read 2", "out 1", "read 3", "out 2", "out 3"]
    assert pipelined.frames == 4 and pipelined._pending is None
    pipelined.close()


class _Slow:
    """A model stand-in that takes ``seconds`` per frame without holding the GIL (as torch's kernels)."""

    def __init__(self, model, seconds: float):
        self.model, self.config, self.seconds = model, model.config, seconds

    def min_input_size(self):
        return self.model.min_input_size()

    def __call__(self, x, state=None):
        import time

        time.sleep(self.seconds)
        return self.model(x, state)


def test_one_frame_in_flight_overlaps_a_slow_decoder():
    import time

    model = _Slow(randomize(FlashDepth(TINY["dav2"])).eval(), 0.06)
    images = make_frames(8)

    def decoded():
        for image in images:
            time.sleep(0.06)  # the decoder stand-in
            yield image

    session = DepthSession(model, device="cpu")
    t0 = time.perf_counter()
    sequential = [session.step(image) for image in decoded()]
    t1 = time.perf_counter()
    session.reset()
    pipelined = list(session.run(decoded()))
    t2 = time.perf_counter()
    assert all(np.array_equal(a, b) for a, b in zip(sequential, pipelined))
    # sequential: 8 x (decode + compute); pipelined: about 8 x max(decode, compute) + one compute
    assert (t2 - t1) < 0.8 * (t1 - t0), (t1 - t0, t2 - t1)


def test_errors_of_the_frame_in_flight_come_out_in_order():
    from flashdepth.errors import InputValueError, NonFiniteOutputError

    model = randomize(FlashDepth(TINY["s"])).eval()
    images = make_frames(4)
    expected = list(DepthSession(model, device="cpu").run(images))
    session = DepthSession(_BreaksAt(model, at=2), device="cpu")
    got = []
    with pytest.raises(NonFiniteOutputError, match="frame 2 of the stream"):
        for depth in session.run(images):
            got.append(depth)
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert session.frames == 2 and session._pending is None  # frame 3 was never started
    # a refused frame while one is in flight: that one's depth is still there
    session = DepthSession(model, device="cpu")
    assert session.submit(images[0]) is None
    bad = images[1].astype(np.float32) / 255
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputValueError, match="frame 1 holds"):
        session.submit(bad)
    with pytest.raises(StreamStateError, match="in flight.*flush"):
        session.step(images[1])
    assert np.array_equal(session.flush(), expected[0]) and session.flush() is None
    assert np.array_equal(session.step(images[1]), expected[1])


def test_normalisation_constants_are_made_once_per_device():
    from flashdepth.inference.preprocess import normalisation_tensors, normalise

    normalisation_tensors.cache_clear()
    session = DepthSession(randomize(FlashDepth(TINY["s"])).eval(), device="cpu")
    list(session.run(make_frames(3)))
    info = normalisation_tensors.cache_info()
    assert info.misses == 1 and info.hits == 2
    rgb = torch.rand(3, 28, 42)
    expected = (rgb - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.allclose(normalise(rgb, (28, 42))[0], expected)


# ------------------------------------------------------------------ devices (issue 21 section 3)
def test_pinned_staging_records_its_event_on_the_copy_devices_stream(monkeypatch):
    from flashdepth.inference.session import PinnedStaging

    log = []

    class Stream:
        def __init__(self, device):
            self.device = device

    class Event:
        def record(self, stream=None):
            log.append(("record", None if stream is None else stream.device))

        def synchronize(self):
            log.append(("wait",))

    real_empty = torch.empty
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream(device))
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: real_empty(*a, **k))
    staging = PinnedStaging(torch.device("cuda", 1))
    staging._upload = lambda buffer: (log.append(("copy",)), buffer.clone())[1]
    frames = [torch.full((4, 5, 3), i, dtype=torch.uint8) for i in range(3)]
    out = [staging.to_device(f) for f in frames]
    assert all(torch.equal(a, b) for a, b in zip(out, frames))
    # copy, then the event on cuda:1's stream; the host waits for copy t before refilling for t+1
    assert log == [("copy",), ("record", torch.device("cuda", 1)),
                   ("wait",), ("copy",), ("record", torch.device("cuda", 1)),
                   ("wait",), ("copy",), ("record", torch.device("cuda", 1))]


def test_bind_device_sets_the_thread_device_and_the_compute_thread_binds(monkeypatch):
    import threading

    import flashdepth.inference.session as session_module
    from flashdepth.device import bind_device

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(device))
    bind_device(torch.device("cuda", 2))
    bind_device(torch.device("cpu"))
    bind_device(torch.device("mps"))
    assert calls == [torch.device("cuda", 2)]
    bound = []
    monkeypatch.setattr(session_module, "bind_device", lambda d: bound.append((d, threading.current_thread().name)))
    session = DepthSession(randomize(FlashDepth(TINY["s"])).eval(), device="cpu")
    list(session.run(make_frames(2)))
    session.close()
    assert len(bound) == 1 and bound[0][0] == torch.device("cpu") and bound[0][1].startswith("flashdepth-compute")


def test_bicubic_falls_back_to_the_cpu_where_the_device_lacks_it(monkeypatch):
    import torch.nn.functional as F

    import flashdepth.device as device_module

    supported = device_module.bicubic_supported.__wrapped__
    assert not supported("mps", "2.4.1") and not supported("mps", "2.5.0a0+git123")
    assert supported("mps", "2.6.0") and supported("mps", "2.13.0+cpu") and supported("mps", "3.0")
    assert supported("cuda", "2.4.0") and supported("cpu", "2.4.0")
    x = torch.rand(1, 3, 10, 12)
    seen = []

    class Tracked(torch.Tensor):
        def cpu(self, *a, **k):
            seen.append("cpu")
            return super().cpu(*a, **k).as_subclass(torch.Tensor)

    monkeypatch.setattr(device_module, "bicubic_supported", lambda device_type: False)
    out = device_module.interpolate_bicubic(x.as_subclass(Tracked), size=(7, 9), align_corners=False)
    assert seen == ["cpu"]
    assert torch.equal(out.as_subclass(torch.Tensor), F.interpolate(x, size=(7, 9), mode="bicubic", align_corners=False))
