"""Sparse metric measurements ("anchors") per frame: reading and checking the file.

Format: a table of rows ``frame, u, v, depth``, as a CSV file (a header line naming the four
columns, in any order; one row per measurement) or an ``.npz`` file (four 1-D arrays of one
length with those names):

* ``frame``: the frame's index in the stream, from 0 (whole numbers);
* ``u``, ``v``: the pixel's column and row in the input frame, pixel centres at whole numbers
  (``flashdepth.geometry``'s convention); fractional values go to the nearest pixel;
* ``depth``: the depth of that pixel along the optical axis (z, as the models output), in metres,
  positive and finite.

Nothing else is accepted: another column, a missing one, an empty table, a non-numeric value, a
negative or fractional frame, a non-positive depth are :class:`flashdepth.errors.AnchorsError`
when the file is read; a pixel outside the frames when the first frame's size is known
(:meth:`Anchors.check_size`); a frame the stream does not have when its length is known
(:meth:`Anchors.check_frames`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import AnchorsError

COLUMNS = ("frame", "u", "v", "depth")


@dataclass(frozen=True)
class Anchors:
    """Checked anchors, grouped by frame: ``pixels[frame] = (rows, cols, depth_m)``."""

    path: str
    pixels: dict  # frame index -> ((N,) int rows, (N,) int cols, (N,) float64 metres)

    @property
    def frames(self) -> list[int]:
        return sorted(self.pixels)

    def __len__(self) -> int:
        return sum(len(p[2]) for p in self.pixels.values())

    def at(self, frame: int) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(rows, cols, metres) of ``frame``, or None when it has no anchor."""
        return self.pixels.get(frame)

    def check_size(self, height: int, width: int) -> None:
        """Every pixel inside an (H, W) frame, or an AnchorsError naming the first one outside."""
        for frame in self.frames:
            rows, cols, _ = self.pixels[frame]
            outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
            if outside.any():
                i = int(np.argmax(outside))
                raise AnchorsError(self.path, f"frame {frame}: pixel u={cols[i]}, v={rows[i]} is outside the "
                                   f"{width}x{height} frames (u must lie in 0..{width - 1}, v in 0..{height - 1}); "
                                   "give pixels of the input's frames (u = column, v = row)")

    def check_frames(self, count: int) -> None:
        """Every frame below ``count`` (the stream's length), or an AnchorsError naming those beyond."""
        beyond = [f for f in self.frames if f >= count]
        if beyond:
            shown = ", ".join(str(f) for f in beyond[:5]) + (" ..." if len(beyond) > 5 else "")
            raise AnchorsError(self.path, f"frame(s) {shown} are unknown: the stream has {count} frame(s), "
                               f"0..{count - 1}; remove those rows or give the input they belong to")


def _columns_from_csv(path: Path) -> dict:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise AnchorsError(str(path), f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]
    if not rows:
        raise AnchorsError(str(path), f"is empty; it needs a header line {','.join(COLUMNS)} and one row per anchor")
    header = [cell.strip().lower() for cell in rows[0]]
    _check_names(str(path), header)
    values = {name: [] for name in header}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise AnchorsError(str(path), f"line {line} has {len(row)} value(s), the header {len(header)}")
        for name, cell in zip(header, row):
            try:
                values[name].append(float(cell))
            except ValueError:
                raise AnchorsError(str(path), f"line {line}: {name}={cell.strip()!r} is not a number") from None
    return {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}


def _columns_from_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            _check_names(str(path), names)
            columns = {name: np.asarray(data[name]) for name in names}
    except AnchorsError:
        raise
    except (OSError, ValueError) as e:
        raise AnchorsError(str(path), f"cannot be read as .npz ({e})") from None
    for name, array in columns.items():
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise AnchorsError(str(path), f"array {name!r} is {array.dtype} of shape {array.shape}; "
                               "each column must be a 1-D array of numbers")
    lengths = {name: len(a) for name, a in columns.items()}
    if len(set(lengths.values())) != 1:
        raise AnchorsError(str(path), f"the arrays differ in length ({lengths}); give one value per anchor in each")
    return {name: a.astype(np.float64) for name, a in columns.items()}


def _check_names(path: str, names: list) -> None:
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS]
    if missing or unknown or len(names) != len(set(names)):
        said = []
        if missing:
            said.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            said.append(f"unknown column(s) {', '.join(map(str, unknown))}")
        if len(names) != len(set(names)):
            said.append("a column named twice")
        raise AnchorsError(path, f"{'; '.join(said)}; the columns are exactly {', '.join(COLUMNS)} "
                           "(frame index, pixel column, pixel row, depth in metres)")


def read_anchors(path: str | Path) -> Anchors:
    """Read and check an anchors file (``.csv`` or ``.npz``; see the module for the format)."""
    path = Path(path)
    if not path.is_file():
        raise AnchorsError(str(path), "does not exist; give a .csv or .npz file of frame,u,v,depth rows")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        columns = _columns_from_csv(path)
    elif suffix == ".npz":
        columns = _columns_from_npz(path)
    else:
        raise AnchorsError(str(path), f"has the extension {suffix or '(none)'!r}; give a .csv or .npz file")
    frame, u, v, depth = (columns[c] for c in COLUMNS)
    if frame.size == 0:
        raise AnchorsError(str(path), "has no anchors (no rows)")
    for name, values in (("frame", frame), ("u", u), ("v", v), ("depth", depth)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise AnchorsError(str(path), f"row {int(np.argmax(bad)) + 1}: {name} is not finite")
    bad = (frame < 0) | (frame != np.round(frame))
    if bad.any():
        i = int(np.argmax(bad))
        raise AnchorsError(str(path), f"row {i + 1}: frame={frame[i]:g} is not a frame index (whole numbers from 0)")
    bad = depth <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise AnchorsError(str(path), f"row {i + 1}: depth={depth[i]:g} is not a depth; give positive metres")
    rows, cols, frames = np.round(v).astype(np.int64), np.round(u).astype(np.int64), frame.astype(np.int64)
    order = np.argsort(frames, kind="stable")
    pixels = {}
    for f in np.unique(frames):
        pick = order[frames[order] == f]
        pixels[int(f)] = (rows[pick], cols[pick], depth[pick])
    return Anchors(str(path), pixels)
