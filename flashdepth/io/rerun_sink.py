"""Rerun (https://rerun.io) recordings: per frame the input image, metric depth and the pinhole
camera, so that the Rerun viewer shows the scene as a point cloud (``flashdepth[rerun]``).

Entities: ``world`` (static: camera coordinates x right, y down, z forward), ``world/camera``
(the pinhole), ``world/camera/rgb`` (the input, JPEG in files) and ``world/camera/depth`` (depth
in metres, float32, 0 where there is no point: the sky and beyond ``max_depth``). Timelines:
``frame`` (the frame's index) and, for videos, ``time`` (seconds). The depth is exact metres for a
metric stream and approximate ones (100 / value) for a relative stream (``Unprojection.unit``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..geometry import Unprojection
from ..utils import as_rgb8
from .sources import Frame

APPLICATION_ID = "flashdepth"
CAMERA = "world/camera"
#: JPEG quality of the input image in recording files (the viewer decodes it; raw RGB is ~15x larger)
JPEG_QUALITY = 90


def new_recording(recording_id: Optional[str] = None) -> Any:
    """A ``rerun.RecordingStream`` of its own (not the SDK's global one, so several can coexist)."""
    import rerun as rr

    return rr.RecordingStream(APPLICATION_ID, recording_id=recording_id or str(uuid.uuid4()))


def default_layout() -> Any:
    """The viewer's initial layout: the point cloud in 3D on the left, input and depth on the right."""
    import rerun.blueprint as rrb

    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Spatial3DView(name="3D", origin="world"),
            rrb.Vertical(rrb.Spatial2DView(name="input", origin=CAMERA, contents=f"{CAMERA}/rgb"),
                         rrb.Spatial2DView(name="depth (m)", origin=CAMERA, contents=f"{CAMERA}/depth")),
            column_shares=[2, 1]),
        rrb.TimePanel(timeline="frame"),
        collapse_panels=True)


class RerunLogger:
    """Logs frames into a recording stream (one per logger); shared by the file output and the
    live viewer :class:`flashdepth.viewer.RerunViewer`."""

    def __init__(self, recording: Any, unprojection: Unprojection = Unprojection(), compress: bool = True,
                 time_base: Optional[Fraction] = None):
        import rerun as rr

        self.rr, self.recording = rr, recording
        self.unprojection, self.compress, self.time_base = unprojection, compress, time_base
        recording.send_blueprint(default_layout())
        recording.log("world", rr.ViewCoordinates.RDF, static=True)

    def log(self, frame: Frame, depth: np.ndarray, unit: Optional[str] = None) -> None:
        """Log one frame; ``unit`` (a name of :data:`flashdepth.config.UNITS`, default the
        unprojection's) is the unit of ``depth``, as a run tells its viewers with each frame."""
        rr, rec = self.rr, self.recording
        if unit is not None and unit != self.unprojection.unit:
            self.unprojection = replace(self.unprojection, unit=unit)
        h, w = depth.shape
        k = self.unprojection.intrinsics_for(w, h)
        rec.set_time("frame", sequence=frame.index)
        if self.time_base is not None and frame.pts is not None:
            rec.set_time("time", duration=float(frame.pts * self.time_base))
        # Rerun puts pixel centres at +0.5 (ours are at integers, see flashdepth.geometry).
        rec.log(CAMERA, rr.Pinhole(focal_length=[k.fx, k.fy], principal_point=[k.cx + 0.5, k.cy + 0.5],
                                   width=w, height=h, camera_xyz=rr.ViewCoordinates.RDF))
        image = rr.Image(as_rgb8(frame.image))
        rec.log(f"{CAMERA}/rgb", image.compress(jpeg_quality=JPEG_QUALITY) if self.compress else image)
        metric = np.nan_to_num(self.unprojection.metric(depth), nan=0.0)  # (H, W) metres, 0 = no point
        rec.log(f"{CAMERA}/depth", rr.DepthImage(metric, meter=1.0))

    def close(self) -> None:
        self.recording.flush()
        self.recording.disconnect()


class RerunWriter:
    """``recording.rrd``, every frame; open it with ``rerun recording.rrd``."""

    def __init__(self, path: Path, unprojection: Unprojection, time_base: Optional[Fraction] = None):
        recording = new_recording()
        recording.save(str(path))
        self.logger = RerunLogger(recording, unprojection, compress=True, time_base=time_base)

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        self.logger.log(frame, depth)

    def close(self) -> None:
        self.logger.close()
