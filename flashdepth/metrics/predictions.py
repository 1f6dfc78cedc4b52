"""Saved predictions of any method, read for the evaluation: what their values mean (the
:data:`PREDICTION_KINDS` table) and where they are (:class:`PredictionFolder`). NumPy only.

A sequence here is anything with ``dataset``, ``name``, ``height``, ``width`` and a length
(:class:`flashdepth.data.sequence.SequenceFolder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import PredictionFormatError, UnknownNameError


@dataclass(frozen=True)
class PredictionKind:
    """One row of :data:`PREDICTION_KINDS`: what the saved values of a method mean."""

    name: str
    description: str
    problem: Callable[[np.ndarray], Optional[str]]  # (H, W) float64 values without NaN -> what is wrong, or None
    to_inverse: Callable[[np.ndarray], np.ndarray]  # (H, W) float64 checked values -> inverse depth


def _depth_problem(depth: np.ndarray) -> Optional[str]:
    bad = int((depth <= 0).sum())
    return f"{bad} depth(s) of 0 or less (write +inf for infinitely far)" if bad else None


def _depth_to_inverse(depth: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / depth  # (H, W): +inf (infinitely far) -> 0


def _disparity_problem(disparity: np.ndarray) -> Optional[str]:
    bad = int(np.isinf(disparity).sum())
    return f"{bad} infinite disparity value(s) (write 0 for infinitely far)" if bad else None


PREDICTION_KINDS: dict[str, PredictionKind] = {k.name: k for k in (
    PredictionKind("depth", "distance, any unit and scale (+inf: infinitely far)", _depth_problem, _depth_to_inverse),
    PredictionKind("disparity", "inverse depth, any scale and shift, as FlashDepth and Depth Anything predict "
                   "(0: infinitely far)", _disparity_problem, lambda values: values),
)}


def _bad_values(values: np.ndarray, kind: PredictionKind) -> Optional[str]:
    """What is wrong with a frame of ``kind`` values, or None."""
    nan = int(np.isnan(values).sum())
    return f"{nan} NaN value(s)" if nan else kind.problem(values)


class PredictionFolder:
    """The saved predictions of a method, one entry per sequence, found in this order:

    * ``ROOT/DATASET/SEQUENCE.npy`` or ``ROOT/SEQUENCE.npy``: one (T, H, W) array;
    * ``ROOT/DATASET/SEQUENCE/`` or ``ROOT/SEQUENCE/``: one (H, W) ``.npy`` file per frame, in the
      order of their sorted names.

    T must be the sequence's frame count and (H, W) the ground truth's size; ``kind`` (a row of
    :data:`PREDICTION_KINDS`) says whether the values are depth or disparity. Problems raise
    :class:`flashdepth.errors.PredictionFormatError` naming the file (and the frame).
    """

    def __init__(self, root, kind: str):
        if kind not in PREDICTION_KINDS:
            raise UnknownNameError("prediction kind", kind, PREDICTION_KINDS)
        self.root, self.kind = Path(root), PREDICTION_KINDS[kind]
        if not self.root.is_dir():
            raise PredictionFormatError(f"predictions folder {self.root} does not exist (or is not a folder)")

    def _entry(self, seq):
        candidates = [self.root / seq.dataset / seq.name, self.root / seq.name]
        for base in candidates:
            if base.with_name(base.name + ".npy").is_file():
                return base.with_name(base.name + ".npy")
            if base.is_dir():
                return base
        tried = ", ".join(f"{c}.npy, {c}/" for c in candidates)
        raise PredictionFormatError(f"no predictions for sequence {seq.dataset}/{seq.name}: looked for {tried}")

    def open(self, seq) -> Callable[[int], np.ndarray]:
        """Check the entry of ``seq`` (frame count, size) -> ``frame(i)``: frame i as checked inverse
        depth (H, W) float64. Values are checked when a frame is read."""
        entry = self._entry(seq)
        expected = (seq.height, seq.width)
        if entry.is_dir():
            files = sorted(entry.glob("*.npy"))
            self._check_count(entry, len(files), seq)
            load = lambda i: (files[i], self._load(files[i]))  # noqa: E731
            shape_of = lambda i: np.load(files[i], mmap_mode="r").shape  # noqa: E731
        else:
            array = self._load(entry, mmap=True)
            if array.ndim != 3:
                raise PredictionFormatError(f"{entry} is {array.shape}: expected (frames, height, width) = "
                                            f"({len(seq)}, {expected[0]}, {expected[1]})")
            self._check_count(entry, array.shape[0], seq)
            load = lambda i: (f"{entry} frame {i}", array[i])  # noqa: E731
            shape_of = lambda i: array.shape[1:]  # noqa: E731
        for i in (0,) if not entry.is_dir() else range(len(seq)):
            if tuple(shape_of(i)) != expected:
                where = files[i] if entry.is_dir() else entry
                raise PredictionFormatError(
                    f"{where}: a prediction of {'x'.join(map(str, shape_of(i)))} but the ground truth of "
                    f"{seq.dataset}/{seq.name} is {expected[0]}x{expected[1]} (height x width); save the predictions "
                    "at the ground truth's size")

        def frame(i: int) -> np.ndarray:
            where, values = load(i)
            values = np.asarray(values, dtype=np.float64)  # (H, W)
            problem = _bad_values(values, self.kind)
            if problem:
                raise PredictionFormatError(f"{where}: {problem}; the predictions are corrupt or not {self.kind.name}")
            return self.kind.to_inverse(values)

        return frame

    @staticmethod
    def _check_count(entry, count: int, seq) -> None:
        if count != len(seq):
            raise PredictionFormatError(f"{entry} holds {count} frame(s) but sequence {seq.dataset}/{seq.name} has "
                                        f"{len(seq)}: predictions must cover every frame")

    @staticmethod
    def _load(path, mmap: bool = False) -> np.ndarray:
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise PredictionFormatError(f"{path} is not a readable .npy array ({e})") from None
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise PredictionFormatError(f"{path} holds {array.dtype} values; save depth or disparity as numbers")
        return array
