"""The session API: owns the stream state, takes numpy or tensor frames."""

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth import FlashDepth, StreamStateError
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
