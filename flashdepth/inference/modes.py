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

from ..errors import InferenceModeError, UnknownNameError


@dataclass(frozen=True)
class InferenceMode:
    name: str
    description: str
    #: needs the frames after the one whose depth it gives: files and folders only, never a live source
    lookahead: bool
    #: the model method it calls (``None``: the model itself, ``depth, state = model(frame, state)``)
    method: str | None = None
    #: has a state to reset at shot cuts (``reset_on_cut``)
    resets: bool = True


MODES: dict[str, InferenceMode] = {m.name: m for m in (
    InferenceMode("streaming", "frame by frame, the model's state carried from frame to frame (any input, live "
                  "sources included; the depth of a frame is out before the next frame is read)", False),
    InferenceMode("windowed", "Video Depth Anything's offline mode: windows of 32 frames overlapping by 10, each "
                  "aligned to the one before (files and folders only; models with a window forward)", True,
                  "forward_window", resets=False),
)}

#: the mode of a run unless another is chosen (``RunOptions.mode``, ``--mode``)
DEFAULT_MODE = "streaming"


def get_mode(name: str) -> InferenceMode:
    """The row of :data:`MODES` named ``name``; an unknown name lists the valid ones."""
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise UnknownNameError("inference mode", name, list(MODES)) from None


def check_run(mode: str, source=None, reset_on_cut: bool = False) -> InferenceMode:
    """The row of ``mode``, after refusing what it cannot run: a live ``source`` (anything with a
    true ``live``, e.g. a :class:`flashdepth.io.sources.Source`) for a mode that reads ahead, and
    resets at shot cuts for a mode without a state."""
    row = get_mode(mode)
    if row.lookahead and source is not None and getattr(source, "live", False):
        name = getattr(source, "name", "") or "the input"
        raise InferenceModeError(row.name, f"reads frames ahead of each depth, so it runs on files and folders, "
                                 f"but {name} is a live source", DEFAULT_MODE)
    if reset_on_cut and not row.resets:
        raise InferenceModeError(row.name, "has no stream state to reset at shot cuts", DEFAULT_MODE,
                                 option="reset_on_cut")
    return row
