"""Consumers of a run's frames: the row type (:class:`Consumer`), the output writers and their
table (:data:`OUTPUTS`).

A consumer takes (frame, depth) pairs one at a time (``write``) and is done after ``close()``.
Each row says whether it may drop frames: the output files get every frame (the pipeline waits
for them), the viewers (:data:`flashdepth.viewer.VIEWERS`, rows of the same type) skip frames
when they fall behind (the pipeline never waits for them). Adding an output format is a writer
class plus one row of :data:`OUTPUTS`; the command line's ``--save`` choices and help come from
the table, and unknown names are errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from ..config import UNITS
from ..errors import OptionValueError, UnknownNameError, require_modules
from ..geometry import Unprojection
from ..utils import as_rgb8
from ..vis.colormap import COLORMAPS, DEFAULT_COLORMAP, StableNormalizer, colorize, lut
from .pointcloud import PlyWriter
from .rerun_sink import RerunWriter
from .sources import Frame

_HEADER_LEN = 128  # fixed .npy header length, so it can be rewritten in place


DEFAULT_PLY_EVERY = 30
#: the outputs of a run unless others are chosen (``RunOptions.outputs``, ``run --save``)
DEFAULT_OUTPUTS = ("vis", "raw")
#: the metadata file every run writes beside its outputs: the unit of their numbers (:class:`MetadataWriter`)
METADATA = "depth.json"


@dataclass(frozen=True)
class OutputOptions:
    """What writers need beyond the frames: the source's timing and the user's choices.

    ``unprojection`` (intrinsics or field of view, depth scale, far limit) is how the 3D outputs
    (``ply``, ``rerun``) and viewers place points; ``ply_every`` writes a point cloud for frames
    0, N, 2N, ...; ``address`` (host, port) is where the live page listens (port 0: a free one).
    ``fps`` and ``time_base`` are the source's, ``unit`` (a name of :data:`flashdepth.config.UNITS`)
    the stream's (:func:`flashdepth.apps.pipeline.run_to_folder` sets them from the source and the
    session); ``unit`` is also the unit of ``unprojection`` (set here, so the two never disagree).
    """

    fps: Fraction = Fraction(30)
    time_base: Fraction = Fraction(1, 30)
    colormap: str = DEFAULT_COLORMAP
    unprojection: Unprojection = Unprojection()
    ply_every: int = DEFAULT_PLY_EVERY
    address: tuple[str, int] = ("127.0.0.1", 0)
    unit: str = "relative-inverse-depth"
    notes: tuple[str, ...] = ()  # how the numbers were made, when not by the model alone (e.g. aligned to metres)

    def __post_init__(self):
        if self.unit not in UNITS:
            raise UnknownNameError("unit", self.unit, list(UNITS))
        if self.unprojection.unit != self.unit:  # one truth: the stream's unit places the 3D points
            object.__setattr__(self, "unprojection", replace(self.unprojection, unit=self.unit))
        if isinstance(self.ply_every, bool) or not isinstance(self.ply_every, int) or self.ply_every < 1:
            raise OptionValueError("ply_every", self.ply_every, "give a number of frames, 1 or more")
        if self.colormap not in COLORMAPS:
            raise UnknownNameError("colour map", self.colormap, COLORMAPS)


class Sink(Protocol):
    def write(self, frame: Frame, depth: np.ndarray) -> None: ...

    def close(self) -> None: ...


def display_values(depth: np.ndarray, unit: str) -> np.ndarray:
    """What colour maps show: inverse depth (near = the high end), whatever the stream's unit."""
    if UNITS[unit].inverse:
        return depth
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)  # (H, W) 1/m


def unit_record(unit: str, depth_scale: float) -> dict:
    """The unit of a stream's numbers as metadata: the row's fields and what metres mean here."""
    row = UNITS[unit]
    if row.metric:
        metres = "exact: depth values are metres" if not row.inverse else "exact: metres = 1 / value"
    else:
        metres = (f"approximate: metres ~ {depth_scale:g} / value (the published models' training scale; "
                  "relative, up to a scale and a shift, not calibrated)")
    return {"name": row.name, "description": row.description, "inverse": row.inverse, "metric": row.metric,
            "symbol": row.symbol, "metres": metres}


class MetadataWriter:
    """``depth.json``: what the numbers of every output of the run mean (the unit's row, how the
    3D outputs got metres), the frames and their size. Written at the start and rewritten (by a
    rename: always whole) at the end; it holds no per-frame data, so it stays small."""

    def __init__(self, path: Path, options: OutputOptions, outputs: Sequence[str] = ()):
        self.path, self.options, self.outputs = path, options, list(outputs)
        self.frames, self.shape = 0, None
        self._write()

    def record(self) -> dict:
        o = self.options
        unit = unit_record(o.unit, o.unprojection.depth_scale)
        points = ("metres (exact)" if o.unprojection.exact else f"metres (approximate: {o.unprojection.depth_scale:g} / value)")
        return {"unit": unit, "notes": list(o.notes), "frames": self.frames, "size": list(self.shape) if self.shape else None,
                "outputs": {name: OUTPUTS[name].path for name in self.outputs if name in OUTPUTS},
                "values": f"depth.npy, exr, png16 (value = png / scale) and the videos hold {unit['symbol']} "
                          f"({unit['name']})",
                "points": f"ply, rerun and the viewers place points in {points}, none beyond "
                          f"max_depth={o.unprojection.max_depth:g} m"}

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.record(), indent=1) + "\n")
        os.replace(tmp, self.path)

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        self.frames += 1
        self.shape = self.shape or tuple(int(n) for n in depth.shape)

    def close(self) -> None:
        self._write()


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

    def __init__(self, path: Path, options: OutputOptions, side_by_side: bool):
        import av

        self.av = av
        self.path, self.fps, self.time_base = path, options.fps, options.time_base
        self.table = lut(options.colormap)
        self.unit = options.unit
        self.normalize = StableNormalizer()
        self.side_by_side = side_by_side
        self.container = None  # opened at the first frame, when the size is known
        self.stream = None
        self.last_pts: Optional[int] = None

    def _open(self, width: int, height: int) -> None:
        self.container = self.av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=self.fps)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2  # yuv420p needs even sides
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = self.time_base
        self.stream.options = {"crf": "18", "preset": "veryfast"}

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        image = colorize(self.normalize(display_values(depth, self.unit)), self.table)  # (H, W, 3)
        if self.side_by_side:
            image = np.concatenate([as_rgb8(frame.image), image], axis=1)
        self.write_image(image, frame.pts if frame.pts is not None else frame.index)

    def write_image(self, image: np.ndarray, pts: int) -> None:
        """Encode one ready-made (H, W, 3) uint8 picture at ``pts`` (in ``time_base`` units)."""
        h, w = image.shape[:2]
        if self.container is None:
            self._open(w, h)
        if (h % 2) or (w % 2):
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        out = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
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
        from PIL import Image

        self.image = Image
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.scales = open(folder / "scales.csv", "w")
        self.scales.write("frame,scale\n")

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        peak = float(depth.max())
        scale = 65535.0 / peak if peak > 0 else 1.0
        self.image.fromarray((depth * scale).round().clip(0, 65535).astype(np.uint16)).save(self.folder / f"{frame.index:06d}.png")
        self.scales.write(f"{frame.index},{scale!r}\n")
        self.scales.flush()

    def close(self) -> None:
        self.scales.close()


class ExrWriter:
    def __init__(self, folder: Path):
        import OpenEXR

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


@dataclass(frozen=True)
class Consumer:
    """One row of :data:`OUTPUTS` (files) or :data:`flashdepth.viewer.VIEWERS` (viewers)."""

    name: str
    path: Optional[str]  # the file or folder it writes inside the output folder; None: a viewer (no file)
    description: str
    open: Callable[[Optional[Path], OutputOptions], Sink]  # (its path or None, options) -> consumer, ready
    needs: tuple[tuple[str, str, str], ...] = ()  # (module, pip package, flashdepth extra)
    drops: bool = False  # may skip frames when behind (the run never waits for it); False: gets every frame

    def check(self) -> None:
        """Raise MissingDependencyError before a run starts rather than at its first frame."""
        require_modules(f"the {self.name!r} {'output' if self.path else 'viewer'}", self.needs)


OutputFormat = Consumer  # the name of the row type before viewers became rows too


_VIDEO = (("av", "av", "video"), ("matplotlib", "matplotlib", "video"))

#: the output files a run can write (every frame, in order)
OUTPUTS: dict[str, Consumer] = {f.name: f for f in (
    Consumer("raw", "depth.npy", "(T, H, W) float32 depth in the stream's unit (depth.json says which), appended per frame, loadable any time",
                 lambda path, o: RawDepthWriter(path)),
    Consumer("vis", "depth.mp4", "colourised depth video (H.264, the input's frame rate and timestamps)",
                 lambda path, o: VideoWriter(path, o, side_by_side=False), _VIDEO),
    Consumer("sbs", "sbs.mp4", "input and colourised depth side by side (H.264)",
                 lambda path, o: VideoWriter(path, o, side_by_side=True), _VIDEO),
    Consumer("png16", "png16", "16-bit PNG per frame + scales.csv (depth = png / scale)",
                 lambda path, o: Png16Writer(path), (("PIL", "pillow", "video"),)),
    Consumer("exr", "exr", "float32 OpenEXR per frame (channel Y)",
                 lambda path, o: ExrWriter(path), (("OpenEXR", "OpenEXR", "exr"),)),
    Consumer("ply", "ply", "coloured point clouds in metres (exact for metric streams, approximate for relative ones; binary PLY), every 30th frame by default",
                 lambda path, o: PlyWriter(path, o.unprojection, o.ply_every), (("plyfile", "plyfile", "ply"),)),
    Consumer("rerun", "recording.rrd", "Rerun recording: image, depth and pinhole camera per frame (3D view)",
                 lambda path, o: RerunWriter(path, o.unprojection, o.time_base), (("rerun", "rerun-sdk", "rerun"),)),
)}


def get_outputs(names: Sequence[str]) -> list[Consumer]:
    """The formats named (duplicates dropped, order kept); unknown names and missing optional
    dependencies are errors."""
    formats = []
    for name in dict.fromkeys(names):
        if name not in OUTPUTS:
            raise UnknownNameError("output", name, list(OUTPUTS))
        OUTPUTS[name].check()
        formats.append(OUTPUTS[name])
    if not formats:
        raise UnknownNameError("output", "", list(OUTPUTS))
    return formats


def open_sinks(outdir: Path, names: Sequence[str], options: OutputOptions = OutputOptions()) -> list[Sink]:
    """One writer per output named, writing into ``outdir``."""
    return open_formats(outdir, get_outputs(names), options)


def open_formats(outdir: Path, formats: Sequence[Consumer], options: OutputOptions = OutputOptions()) -> list[Sink]:
    """One writer per row of ``formats`` (rows of :data:`OUTPUTS`, already checked), into ``outdir``,
    and the metadata file :data:`METADATA` that says their unit."""
    sinks: list[Sink] = []
    try:
        sinks.append(MetadataWriter(Path(outdir) / METADATA, options, [f.name for f in formats]))
        for fmt in formats:
            sinks.append(fmt.open(Path(outdir) / fmt.path, options))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
