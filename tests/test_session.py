"""The session API: owns the stream state, takes numpy or tensor frames."""

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("hw,policy,explicit,expected", [
    ((532, 952), "native", False, (532, 952)),      # multiples of 14 within the cap: as is
    ((540, 960), "native", False, (546, 966)),      # rounded to the nearest multiple, never below
    ((1149, 2044), "native", False, (1162, 2044)),  # 1149 -> 1162 (ceil when rounding goes below)
    ((2160, 3840), "native", False, (1162, 2044)),  # long side capped at 2044, then 1149 -> 1162
    ((540, 960), 518, False, (518, 924)),           # short side 518
    ((532, 952), 518, True, (518, 924)),            # an explicit resolution always applies
    ((532, 952), 518, False, (532, 952)),
])
def test_processing_size_policy(hw, policy, explicit, expected):
    assert processing_size(*hw, policy, explicit=explicit) == expected
