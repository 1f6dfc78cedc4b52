"""The session API: owns the stream state, takes numpy or tensor frames."""

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth import FlashDepth, InputShapeError, StreamStateError
from flashdepth.preprocess import processing_size
from flashdepth.session import DepthSession

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
    from flashdepth.preprocess import model_processing_size

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
    from flashdepth.pipeline import RunOptions, RunStats, run_to_folder
    from PIL import Image

    paths = []
    for i, image in enumerate(make_frames(5)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    model = randomize(FlashDepth(TINY["s"])).eval()
    session = DepthSession(_BreaksAt(model, at=3), device="cpu")
    stats = RunStats()
    with pytest.raises(NonFiniteOutputError, match="frame 3 of the stream"):
        run_to_folder(ImageSource(paths, "five", 10), session, tmp_path / "out", RunOptions(outputs=("raw",)),
                      stats=stats)
    written = np.load(tmp_path / "out" / "depth.npy")
    assert written.shape == (3, 140, 196) and np.isfinite(written).all() and stats.frames == 3
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
