"""Point clouds: binary PLY files of coloured points, through plyfile (``flashdepth[ply]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..geometry import Unprojection
from .sources import Frame

_VERTEX = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]


def write_ply(path: str | Path, points: np.ndarray, colors: Optional[np.ndarray] = None,
              comments: Sequence[str] = ()) -> None:
    """(N, 3) points and optional (N, 3) uint8 colours -> a binary little-endian PLY file."""
    from plyfile import PlyData, PlyElement

    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = _VERTEX if colors is not None else _VERTEX[:3]
    vertex = np.empty(len(points), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<",
            comments=list(comments)).write(str(path))


class PlyWriter:
    """``NNNNNN.ply`` (the frame's index) for frames 0, N, 2N, ...: the valid pixels unprojected
    into camera coordinates (x right, y down, z forward, metres), coloured by the input. The
    metres are exact for a metric stream and approximate for a relative one
    (``unprojection.unit``); the file's comments say which."""

    def __init__(self, folder: Path, unprojection: Unprojection, every: int):
        self.folder, self.unprojection, self.every = folder, unprojection, every
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        if frame.index % self.every:
            return
        points, colors = self.unprojection.points(depth, frame.image)
        k = self.unprojection.intrinsics_for(depth.shape[1], depth.shape[0])
        comments = [f"flashdepth frame {frame.index}", "camera coordinates: x right, y down, z forward, metres",
                    f"unit {self.unprojection.unit}: " + ("exact metres" if self.unprojection.exact else
                                                          f"approximate metres ({self.unprojection.depth_scale:g} / value)"),
                    f"intrinsics fx {k.fx:.6g} fy {k.fy:.6g} cx {k.cx:.6g} cy {k.cy:.6g} (pixel centres at integers)"]
        write_ply(self.folder / f"{frame.index:06d}.ply", points, colors, comments)

    def close(self) -> None:
        pass
