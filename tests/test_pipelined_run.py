"""``flashdepth run``'s loop keeps one frame in flight (issue 21, section 5): the same depths in the
same order as one frame at a time, with frame t+1 prepared before the depth of frame t is read
when the reader has it waiting, never an extra frame of latency when it has not, and scene cuts,
refused frames and errors of the frame in flight handled as before."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from flashdepth.apps.pipeline import ShotCutDetector, StreamRun
from flashdepth.errors import FrameSizeChangedError
from flashdepth.inference.session import DepthSession
from flashdepth.io.sources import Frame, Source
from flashdepth.models.flashdepth import FlashDepth

from conftest import TINY, randomize


@pytest.fixture(scope="module")
def tiny_model():
    """A temporal model (its state matters: a wrong order or a missed reset changes the depths)."""
    return randomize(FlashDepth(TINY["s"]), seed=5).eval()


class ListSource(Source):
    def __init__(self, images, delay_s: float = 0.0):
        self.images, self.delay_s, self.name = images, delay_s, "list"

    def __iter__(self):
        for i, image in enumerate(self.images):
            time.sleep(self.delay_s)
            yield Frame(image, i, pts=i)


class Collect:
    def __init__(self):
        self.items = []

    def write(self, frame, depth):
        self.items.append((frame.index, depth.copy()))

    def close(self):
        pass


class Recorder(DepthSession):
    """The real session on the tiny model, logging the order of its calls."""

    def __init__(self, model):
        super().__init__(model, device="cpu")
        self.log, self._in_submit = [], False

    def submit(self, frame):
        self.log.append(("submit", int(frame[0, 0, 0])))
        self._in_submit = True
        try:
            return super().submit(frame)
        finally:
            self._in_submit = False

    def flush(self):
        if not self._in_submit:  # submit's own wait for the frame before is not a call of the run
            self.log.append(("flush",))
        return super().flush()

    def reset(self, size=None):
        self.log.append(("reset",))
        super().reset(size)


def _frames(n, h=48, w=64, seed=0, base=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image[0, 0, 0] = base + i  # the frame's index, readable in the call log
        out.append(image)
    return out


def _sequential(model, images):
    session = DepthSession(model, device="cpu")
    return [session.step(image) for image in images]


def _run(session, source, **kw):
    sink = Collect()
    stats = StreamRun(source, session, [sink], **kw).run()
    session.close()
    return sink.items, stats


def test_outputs_equal_one_frame_at_a_time_and_frames_overlap(tiny_model):
    images = _frames(7)
    session = Recorder(tiny_model)
    sink = Collect()
    sink.write = lambda frame, depth: (sink.items.append((frame.index, depth.copy())),
                                       session.log.append(("write", frame.index)))
    stats = StreamRun(ListSource(images), session, [sink]).run()
    session.close()
    assert [i for i, _ in sink.items] == list(range(7)) and stats.frames == 7
    for (_, got), want in zip(sink.items, _sequential(tiny_model, images)):
        np.testing.assert_array_equal(got, want)
    # the reader is ahead (the frames are waiting): frame t+1 starts before frame t is written
    log = session.log
    overlapped = [t for t in range(6) if log.index(("submit", t + 1)) < log.index(("write", t))]
    assert len(overlapped) >= 4, log


def test_no_frame_waiting_means_no_extra_latency(tiny_model):
    """A slow (live-like) source: each frame is finished before the next arrives."""
    images = _frames(3)
    session = Recorder(tiny_model)
    delivered = []

    class Timed(Collect):
        def write(self, frame, depth):
            delivered.append((frame.index, time.perf_counter()))

    arrivals = {}

    class SlowSource(ListSource):
        def __iter__(self):
            for frame in super().__iter__():
                arrivals[frame.index] = time.perf_counter()
                yield frame

    run = StreamRun(SlowSource(images, delay_s=0.4), session, [Timed()])
    run.run()
    session.close()
    assert session.log == [("submit", 0), ("flush",), ("submit", 1), ("flush",), ("submit", 2), ("flush",)]
    for index, at in delivered:  # each depth left before the next frame was even read
        if index + 1 in arrivals:
            assert at < arrivals[index + 1], (index, at, arrivals)


def test_scene_cut_resets_between_the_right_frames(tiny_model):
    a = [f // 4 for f in _frames(3, seed=1)]
    b = [192 + f // 4 for f in _frames(3, seed=2)]
    for i, image in enumerate(a + b):
        image[0, 0, 0] = i
    session = Recorder(tiny_model)
    items, stats = _run(session, ListSource(a + b), reset_on_cut=True)
    assert stats.resets == 1 and [i for i, _ in items] == list(range(6))
    reset_at = session.log.index(("reset",))
    assert session.log[reset_at + 1] == ("submit", 3)  # the stream restarts at the cut frame
    assert all(entry != ("submit", 3) for entry in session.log[:reset_at])
    # against an oracle: the two scenes streamed separately
    want = _sequential(tiny_model, a) + _sequential(tiny_model, b)
    detector = ShotCutDetector()
    assert [detector(image) for image in a + b] == [False, False, False, True, False, False]
    for (_, got), w in zip(items, want):
        np.testing.assert_array_equal(got, w)


def test_a_refused_frame_still_delivers_the_frame_in_flight(tiny_model):
    images = _frames(3) + _frames(1, h=40, w=64, base=3)  # the 4th frame changes size
    session = Recorder(tiny_model)
    sink = Collect()
    with pytest.raises(FrameSizeChangedError) as info:
        StreamRun(ListSource(images), session, [sink]).run()
    session.close()
    assert [i for i, _ in sink.items] == [0, 1, 2]  # frame 2 was in flight when frame 3 was refused
    assert info.value.stats.frames == 3


def test_an_error_of_the_frame_in_flight_stops_before_anything_else(tiny_model, monkeypatch):
    images = _frames(5)
    session = Recorder(tiny_model)
    calls = {"n": 0}
    forward = session._forward
    lock = threading.Lock()

    def failing(x, state):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        depth, state, finite = forward(x, state)
        if n == 3:  # the third frame's result is not finite
            depth = depth * float("nan")
            finite = finite & False
        return depth, state, finite

    monkeypatch.setattr(session, "_forward", failing)
    sink = Collect()
    from flashdepth.errors import NonFiniteOutputError

    with pytest.raises(NonFiniteOutputError):
        StreamRun(ListSource(images), session, [sink]).run()
    session.close()
    assert [i for i, _ in sink.items] == [0, 1]


def test_batch_worker_makes_its_device_current_before_opening_the_session(tmp_path, monkeypatch):
    """A worker on cuda:N binds cuda:N first (else staging and threads open a context on cuda:0);
    CUDA is mocked: the order of the calls is what is checked."""
    import types

    import torch

    from flashdepth.batch import worker as worker_module

    calls = []
    monkeypatch.setattr(worker_module, "resolve_device", lambda device: torch.device("cuda", 1))
    monkeypatch.setattr(worker_module, "bind_device", lambda device: calls.append(("bind", device)))
    job = types.SimpleNamespace(outroot=str(tmp_path),
                                session=types.SimpleNamespace(open=lambda device: calls.append(("open", device))))
    worker_module.BatchWorker(job, device="cuda:1")
    assert calls == [("bind", torch.device("cuda", 1)), ("open", "cuda:1")]


def test_a_session_with_step_only_runs_one_frame_at_a_time(tiny_model):
    """A session of one's own need not offer submit/flush: the run steps it frame by frame."""
    images = [f // 4 for f in _frames(3, seed=1)] + [192 + f // 4 for f in _frames(3, seed=2)]

    class StepOnly:
        def __init__(self):
            self.inner, self.resets = DepthSession(tiny_model, device="cpu"), 0

        def step(self, image):
            return self.inner.step(image)

        def reset(self):
            self.resets += 1
            self.inner.reset()

    session = StepOnly()
    items, stats = _run(types_close(session), ListSource(images), reset_on_cut=True)
    assert [i for i, _ in items] == list(range(6)) and stats.resets == session.resets == 1
    want = _sequential(tiny_model, images[:3]) + _sequential(tiny_model, images[3:])
    for (_, got), w in zip(items, want):
        np.testing.assert_array_equal(got, w)


def types_close(session):
    session.close = lambda: None
    return session
