"""Output writers. Each consumes (frame, depth) pairs one at a time and is valid after close().

* ``raw``   -- ``depth.npy``: one (T, H, W) float32 array, appended frame by frame; the header is
               rewritten on close (and after every frame's flush), so the file always holds exactly
               the frames written and loads with ``numpy.load(..., mmap_mode="r")``.
* ``vis``   -- ``depth.mp4``: colourised depth, H.264, the input's frame rate and timestamps.
* ``sbs``   -- ``sbs.mp4``: input and colourised depth side by side.
* ``png16`` -- ``png16/000000.png``: 16-bit PNG per frame; ``png16/scales.csv`` gives each
               frame's scale, one line per frame (depth = png / scale).
* ``exr``   -- ``exr/000000.exr``: float32 EXR per frame (channel Y; needs OpenEXR).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from .colormap import StableNormalizer, colorize, lut
from .sources import Frame

OUTPUTS = ("raw", "vis", "sbs", "png16", "exr")
OUTPUT_FILES = {"raw": "depth.npy", "vis": "depth.mp4", "sbs": "sbs.mp4", "png16": "png16", "exr": "exr"}
_HEADER_LEN = 128  # fixed .npy header length, so it can be rewritten in place


class RawDepthWriter:
    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "wb")
        self.count = 0
        self.shape: Optional[tuple[int, int]] = None
        self._write_header()

    def _write_header(self) -> None:
        h, w = self.shape or (0, 0)
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (self.count, h, w)
        preamble = b"\x93NUMPY\x01\x00"
        body = header.ljust(_HEADER_LEN - len(preamble) - 2 - 1) + "\n"
        self.file.seek(0)
        self.file.write(preamble + len(body).to_bytes(2, "little") + body.encode("latin1"))
        self.file.seek(0, 2)

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        if self.shape is None:
            self.shape = depth.shape
        elif depth.shape != self.shape:
            raise ValueError(f"depth.npy holds {self.shape} frames; got {depth.shape}")
        self.file.write(np.ascontiguousarray(depth, dtype="<f4").tobytes())
        self.count += 1
        self._write_header()

    def close(self) -> None:
        self.file.close()  # the header is rewritten after every frame, so it is already current


class VideoWriter:
    """H.264 mp4 through PyAV, at the source's frame rate, with the source's timestamps."""

    def __init__(self, path: Path, fps: Fraction, time_base: Fraction, colormap: str, side_by_side: bool):
        self.path, self.fps, self.time_base = path, fps, time_base
        self.table = lut(colormap)
        self.normalize = StableNormalizer()
        self.side_by_side = side_by_side
        self.container = None
        self.stream = None
        self.last_pts: Optional[int] = None

    def _open(self, width: int, height: int) -> None:
        import av

        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=self.fps)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2  # yuv420p needs even sides
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = self.time_base
        self.stream.options = {"crf": "18", "preset": "veryfast"}

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        import av

        image = colorize(self.normalize(depth), self.table)  # (H, W, 3)
        if self.side_by_side:
            rgb = frame.image
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[..., None], 3, axis=2)
            rgb = rgb[..., :3]
            if rgb.dtype != np.uint8:
                rgb = (rgb.astype(np.float32) / 257.0).round().astype(np.uint8)
            image = np.concatenate([rgb, image], axis=1)
        h, w = image.shape[:2]
        if self.container is None:
            self._open(w, h)
        if (h % 2) or (w % 2):
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        pts = frame.pts if frame.pts is not None else frame.index
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # keep timestamps strictly increasing (some streams repeat them)
        out.pts, out.time_base = pts, self.time_base
        self.last_pts = pts
        for packet in self.stream.encode(out):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None


class Png16Writer:
    """Each frame scaled by its own maximum to the full 16-bit range; the scale is appended to
    ``scales.csv`` (constant work per frame, whatever the length of the video)."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.scales = open(folder / "scales.csv", "w")
        self.scales.write("frame,scale\n")

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        from PIL import Image

        peak = float(depth.max())
        scale = 65535.0 / peak if peak > 0 else 1.0
        Image.fromarray((depth * scale).round().clip(0, 65535).astype(np.uint16)).save(self.folder / f"{frame.index:06d}.png")
        self.scales.write(f"{frame.index},{scale!r}\n")
        self.scales.flush()

    def close(self) -> None:
        self.scales.close()


class ExrWriter:
    def __init__(self, folder: Path):
        try:
            import OpenEXR
        except ImportError:
            from ..errors import FlashDepthError

            raise FlashDepthError("--save exr needs OpenEXR: pip install 'flashdepth[exr]'") from None
        self.openexr = OpenEXR
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        exr = self.openexr
        header = {"compression": exr.ZIP_COMPRESSION, "type": exr.scanlineimage}
        with exr.File(header, {"Y": np.ascontiguousarray(depth, dtype=np.float32)}) as f:
            f.write(str(self.folder / f"{frame.index:06d}.exr"))

    def close(self) -> None:
        pass


def open_sinks(outdir: Path, outputs: list[str], fps: Fraction, time_base: Fraction, colormap: str) -> list:
    sinks = []
    for name in outputs:
        if name == "raw":
            sinks.append(RawDepthWriter(outdir / OUTPUT_FILES["raw"]))
        elif name == "vis":
            sinks.append(VideoWriter(outdir / OUTPUT_FILES["vis"], fps, time_base, colormap, side_by_side=False))
        elif name == "sbs":
            sinks.append(VideoWriter(outdir / OUTPUT_FILES["sbs"], fps, time_base, colormap, side_by_side=True))
        elif name == "png16":
            sinks.append(Png16Writer(outdir / OUTPUT_FILES["png16"]))
        elif name == "exr":
            sinks.append(ExrWriter(outdir / OUTPUT_FILES["exr"]))
    return sinks
