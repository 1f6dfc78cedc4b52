"""The one table of inference modes: how the frames of an input go through a model.

``streaming`` is the package's own way: one frame in, its depth out, the model's state carried
from frame to frame (any source, live ones included). ``windowed`` is Video Depth Anything's
offline way (:mod:`flashdepth.inference.windowed`): overlapping windows of frames, each aligned
to the one before, so a depth is out only once the frames after it have been seen; it needs a
model with a window forward (``forward_window``) and an input that can be read ahead (a file or
a folder, not a live source).

Importing this module does not import torch (the command line builds ``--mode``'s choices from it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownNameError


@dataclass(frozen=True)
class InferenceMode:
    name: str
    description: str
    #: needs the frames after the one whose depth it gives: files and folders only, never a live source
    lookahead: bool
    #: the model method it calls (``None``: the model itself, ``depth, state = model(frame, state)``)
    method: str | None = None


MODES: dict[str, InferenceMode] = {m.name: m for m in (
    InferenceMode("streaming", "frame by frame, the model's state carried from frame to frame (any input, live "
                  "sources included; the depth of a frame is out before the next frame is read)", False),
    InferenceMode("windowed", "Video Depth Anything's offline mode: windows of 32 frames overlapping by 10, each "
                  "aligned to the one before (files and folders only; models with a window forward)", True,
                  "forward_window"),
)}

#: the mode of a run unless another is chosen (``RunOptions.mode``, ``--mode``)
DEFAULT_MODE = "streaming"


def get_mode(name: str) -> InferenceMode:
    """The row of :data:`MODES` named ``name``; an unknown name lists the valid ones."""
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise UnknownNameError("inference mode", name, list(MODES)) from None
