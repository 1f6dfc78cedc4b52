"""Windowed (offline) inference, Video Depth Anything's way, in bounded memory.

The model sees windows of ``length`` frames (32). Consecutive windows share ``overlap`` frames
(10): window w starts at frame ``w * (length - overlap)``, and its first ``overlap`` slots are not
the frames at those positions but the *key frames* of the window before (slots ``keyframes`` of
its input: the first frame of the video, one frame from the middle, and the last eight), so every
window sees where the previous one stood. The end of the video is padded with copies of its last
frame up to a whole window.

Each window's depth is brought to the frame size, then aligned to the depth already given out: a
least-squares scale and shift fitted on the first ``overlap - interpolate`` key frames (2: the
first frame of the video, whose reference is window 0's, and the middle one of the previous
window) -- not for metric models (``align=False``), whose depth is absolute. The last
``interpolate`` (8) depths of a window are blended linearly into the next window's depths of the
same frames; everything before them is final as soon as its window has run.

The official ``infer_video_depth`` keeps every frame and every depth of the video in memory and
aligns at the end. Here frames are pulled from an iterator only as the next window needs them
and depths are yielded as soon as they are final, so at most one window of frames (plus the
key frames carried over) and one window of depths are held, whatever the length of the video.
The numbers are the official ones: ``tests/test_windowed.py`` compares the two.

>>> for frame, depth in WindowedRun(session).pairs(frames):   # a session on a model with forward_window
...     ...                                                     # depth: (H, W) float32 numpy
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np
import torch

from ..device import autocast
from ..errors import FrameSizeChangedError, InferenceModeError, NonFiniteOutputError, OptionValueError
from .modes import get_mode
from .preprocess import resize_depth

T = TypeVar("T")

#: a window of prepared frames (B, T, 3, h, w) -> depth (B, T, h', w') (e.g. a model's ``forward_window``)
WindowFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class WindowOptions:
    """The shape of the windows; the defaults are Video Depth Anything's (its code says: do not change)."""

    length: int = 32  # frames the model sees at once
    overlap: int = 10  # slots of a window taken by the key frames of the window before
    keyframes: tuple[int, ...] = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)  # those slots of the window before
    interpolate: int = 8  # depths blended between two windows (the last of the key frames)
    align: bool = True  # scale and shift each window onto the previous one (off for metric depth)

    def __post_init__(self):
        object.__setattr__(self, "keyframes", tuple(int(k) for k in self.keyframes))
        if self.length < 2:
            raise OptionValueError("length", self.length, "give at least 2 frames per window (32 for Video Depth Anything)")
        if not 0 < self.overlap < self.length:
            raise OptionValueError("overlap", self.overlap, f"give between 1 and length-1={self.length - 1} frames")
        if len(self.keyframes) != self.overlap or not all(0 <= k < self.length for k in self.keyframes):
            raise OptionValueError("keyframes", self.keyframes, f"give overlap={self.overlap} slot numbers, each "
                                   f"in [0, {self.length})")
        if not 2 <= self.interpolate < self.overlap:
            raise OptionValueError("interpolate", self.interpolate, f"give between 2 and overlap-1={self.overlap - 1} "
                                   "frames (the key frames before them are the ones aligned)")
        if self.length - self.overlap < self.interpolate:
            raise OptionValueError("interpolate", self.interpolate, f"give at most length-overlap="
                                   f"{self.length - self.overlap} frames (the new frames of a window)")

    @property
    def step(self) -> int:
        """Frames between the starts of two windows (the new frames of every window after the first)."""
        return self.length - self.overlap

    @property
    def aligned(self) -> int:
        """Key frames whose depths fit the scale and shift (those before the interpolated ones)."""
        return self.overlap - self.interpolate


def _blend_weights(n: int) -> list[float]:
    """The weight of the new window's depth for each of the ``n`` blended frames, 0 to 1.

    Written as the official code computes them (``i * (1 / (n - 1))``, not ``i / (n - 1)``), so
    the blend is the same to the last bit."""
    step = 1.0 / (n - 1)
    return [0.0] + [i * step for i in range(1, n - 1)] + [1.0]


def _scale_and_shift(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Least squares ``s, t`` minimising ``|s * prediction + t - target|^2`` over every pixel;
    (1, 0) when the system is singular (a constant prediction), as in the official code."""
    wide = torch.float32 if prediction.device.type == "mps" else torch.float64  # MPS has no float64
    p, t = prediction.to(wide), target.to(wide)  # (a, H, W) each
    a00, a01, b0, b1 = torch.stack([(p * p).sum(), p.sum(), (p * t).sum(), t.sum()]).tolist()  # one sync
    a11 = float(p.numel())
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1.0, 0.0
    return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


def windowed_depths(items: Iterable[T], window_fn: WindowFn,
                    prepare: Callable[[T], tuple[torch.Tensor, tuple[int, int]]],
                    options: WindowOptions = WindowOptions()) -> Iterator[tuple[T, torch.Tensor]]:
    """(item, depth (H, W) float32) for every item of ``items``, in order, each as soon as it is final.

    ``prepare(item)`` -> (the frame as the model takes it, (3, h, w); the (H, W) its depth is
    given at). ``window_fn`` maps (1, length, 3, h, w) -> (1, length, h', w'). ``items`` is read
    lazily: when the depth of item i comes out, at most ``options.length`` items after it have
    been read. The depths are new tensors (holding one keeps no window alive).
    """
    length, overlap, blend = options.length, options.overlap, options.interpolate
    keys, aligned = list(options.keyframes), options.aligned
    weights = _blend_weights(blend)
    source = iter(items)
    waiting: deque = deque()  # the items read whose depth is not out yet, oldest first (at most one window)
    read = 0  # items read so far
    ended = False
    window: Optional[torch.Tensor] = None  # (1, length, 3, h, w), refilled in place window after window
    last: Optional[torch.Tensor] = None  # (3, h, w) the last frame read: the padding of the end
    size: Optional[tuple[int, int]] = None  # (H, W) of the depths

    def fill(first_slot: int) -> None:
        """Read frames into slots ``first_slot..length-1``; past the end, copies of the last frame."""
        nonlocal read, ended, window, last, size
        for slot in range(first_slot, length):
            if not ended:
                try:
                    item = next(source)
                except StopIteration:
                    ended = True
            if not ended:
                x, frame_size = prepare(item)  # (3, h, w)
                if size is None:
                    size = tuple(frame_size)
                    window = x.new_empty((1, length, *x.shape))
                elif tuple(frame_size) != size:
                    raise FrameSizeChangedError(read, frame_size, size)
                window[0, slot] = x
                last = x
                waiting.append(item)
                read += 1
            elif last is not None:
                window[0, slot] = last

    def give(depths: torch.Tensor, start: int) -> Iterator[tuple[T, torch.Tensor]]:
        """Hand out depths (n, H, W) of frames ``start..``: those of read frames (not the padding)."""
        for i in range(depths.shape[0]):
            if start + i >= read:  # past the end: a padding frame (only once the input has ended)
                return
            yield waiting.popleft(), depths[i].clone()

    fill(0)
    if read == 0:
        return
    start = 0  # the first frame of the current window
    pending = reference = None
    while True:
        depth = window_fn(window)  # (1, length, h', w')
        depth = resize_depth(depth[0].float(), size)  # (length, H, W): aligned at the frames' size, as the official code
        if pending is None:  # the first window sets the scale: given out as it is
            reference = depth[keys[:aligned]].clone()  # (aligned, H, W): unclipped, as given out
            yield from give(depth[:length - blend], 0)
            pending = depth[length - blend:].clone()  # (blend, H, W): blended with the next window
        else:
            scale, shift = _scale_and_shift(depth[:aligned], reference) if options.align else (1.0, 0.0)
            post = (depth[aligned:overlap] * scale + shift).clamp_(min=0)  # (blend, H, W): the same frames as pending
            mixed = torch.stack([p * (1 - w) + q * w for p, q, w in zip(pending, post, weights)])  # (blend, H, W)
            yield from give(mixed, start + overlap - blend)
            new = (depth[overlap:] * scale + shift).clamp_(min=0)  # (length - overlap, H, W)
            yield from give(new[:-blend], start + overlap)
            pending = new[-blend:].clone()
            # The first frame of the video keeps the reference of window 0; the others are this window's.
            reference = torch.cat([reference[:1], (depth[keys[1:aligned]] * scale + shift).clamp_(min=0)])
        del depth
        start += options.step
        if read <= start:  # the next window would start past the end: the blended tail is final
            yield from give(pending, start + overlap - blend)
            return
        window[0, :overlap] = window[0, keys]  # the key frames of this window open the next (indexing copies first)
        fill(overlap)


class WindowedRun:
    """The windowed mode through a :class:`~flashdepth.inference.session.DepthSession`'s model.

    Frames are checked and prepared as the session does for a stream (its processing size, its
    device), the model's ``forward_window`` runs under the session's precision, and depths come
    back at the frames' size. ``options`` defaults to the official windows, aligned unless the
    model's output unit is metric (``config.unit.metric``).
    """

    def __init__(self, session, options: Optional[WindowOptions] = None):
        method = get_mode("windowed").method
        self.window_fn = getattr(session.model, method, None)
        if not callable(self.window_fn):
            raise InferenceModeError("windowed", f"needs a model with a window forward ({method}), and "
                                     f"{session.config.name} has none", "streaming")
        self.session = session
        self.options = options or WindowOptions(align=not session.config.unit.metric)
        self.latencies_ms: list[float] = []  # the model's time for each window

    def _prepare(self, frame) -> tuple[torch.Tensor, tuple[int, int]]:
        """The session's checks and preparation. ``session.frames`` counts the frames read here (not
        the depths out, which lag a window behind), so its errors name the frame that failed."""
        with torch.inference_mode():
            x = self.session._prepare(frame)  # (1, 3, h, w) on the session's device
        self.session.frames += 1
        return x[0], self.session.input_size

    def _window(self, frames: torch.Tensor) -> torch.Tensor:
        """(1, length, 3, h, w) -> (1, length, h', w') float32; a non-finite depth is an error."""
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast(self.session.device, self.session.precision):
            depth = self.window_fn(frames).float()  # (1, length, h', w')
        if not bool(torch.isfinite(depth).all()):
            raise NonFiniteOutputError(self.session.frames - 1, where="depth of the window ending")
        self.latencies_ms.append(1000 * (time.perf_counter() - t0))
        return depth

    def pairs(self, items: Iterable[T], image: Callable[[T], object] = lambda item: item
              ) -> Iterator[tuple[T, np.ndarray]]:
        """(item, depth (H, W) float32 numpy) for each item, in order; ``image(item)`` is its frame
        ((H, W, 3) as :meth:`DepthSession.step` takes). Starts a new stream on the session."""
        self.session.reset()
        # No inference mode around the loop: it would stay on in the caller's code between yields.
        # The model and the preparation run in it; the alignment's tensors need no gradient anyway.
        for item, depth in windowed_depths(items, self._window, lambda item: self._prepare(image(item)), self.options):
            yield item, depth.cpu().numpy()

    def run(self, frames: Iterable) -> Iterator[np.ndarray]:
        """Depth (H, W) for each frame, in order (as :meth:`DepthSession.run`, windowed)."""
        for _, depth in self.pairs(frames):
            yield depth
