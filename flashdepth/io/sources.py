"""Frame sources. Every source decodes lazily and yields one :class:`Frame` at a time.

Specs accepted by :func:`open_source`:
  * a video file FFmpeg can decode (through PyAV)
  * a folder of images (natural sort: 2.png before 10.png), a single image, or a glob pattern
  * ``webcam:N`` (or a device path like /dev/video0)
  * a network stream URL (rtsp://, http(s)://, udp://, ...)
  * ``lavfi:EXPR``: an FFmpeg test source (e.g. ``lavfi:testsrc=size=320x240:rate=10``), a stand-in
    for a live camera
"""

from __future__ import annotations

import glob as globlib
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import InputError
from ..utils import first_line, natural_key

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8, or uint16 / grayscale / RGBA for images
    index: int
    pts: Optional[int] = None  # presentation timestamp in ``time_base`` units (videos)


def _read_image(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.uint16) if im.mode != "I" else np.asarray(im).clip(0, 65535).astype(np.uint16)
            elif im.mode in ("RGB", "L", "RGBA"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise InputError(f"cannot read image {path}: {e}") from None
    return arr


class Source:
    """Base: iterate for frames; ``fps``/``time_base`` describe the timing."""

    name: str = ""
    fps: Fraction = Fraction(30)
    time_base: Fraction = Fraction(1, 30)
    live: bool = False
    frame_count: Optional[int] = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def truncation_warning(self) -> Optional[str]:
        return None

    def close(self) -> None:
        pass


class ImageSource(Source):
    def __init__(self, paths: list[str], name: str, fps: float):
        self.paths, self.name = paths, name
        self.fps = Fraction(fps).limit_denominator(1001)
        self.time_base = 1 / self.fps
        self.frame_count = len(paths)

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            yield Frame(_read_image(path), i, pts=i)


class AVSource(Source):
    """Anything PyAV opens: files, devices, URLs, lavfi."""

    def __init__(self, url: str, name: str, fmt: Optional[str] = None, live: bool = False,
                 options: Optional[dict] = None):
        import av

        self.name, self.live = name, live
        try:
            self.container = av.open(url, format=fmt, options=options or {})
        except Exception as e:
            raise InputError(f"cannot open {name}: {first_line(e)}") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{name} has no video stream; give a video, an image folder or an image")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(30)
        self.fps = Fraction(rate)
        self.time_base = Fraction(self.stream.time_base) if self.stream.time_base else 1 / self.fps
        self.frame_count = self.stream.frames or None
        self.last_time: Optional[float] = None  # seconds of the last decoded frame
        self.truncation: Optional[str] = None  # set when decoding ends well before the declared end

    def __iter__(self) -> Iterator[Frame]:
        import av

        index = 0
        try:
            for frame in self.container.decode(self.stream):
                yield Frame(frame.to_ndarray(format="rgb24"), index, pts=frame.pts)
                if frame.pts is not None:
                    self.last_time = float(frame.pts * self.time_base)
                index += 1
        except av.error.FFmpegError as e:
            raise InputError(f"{self.name}: stopped at frame {index}, the video cannot be decoded further "
                             f"({first_line(e)})") from None
        if index == 0:
            raise InputError(f"{self.name} has no decodable frames")
        self.truncation = self._check_truncation()

    def truncation_warning(self) -> Optional[str]:
        return self.truncation

    def _check_truncation(self) -> Optional[str]:
        """A note when decoding ended well before the duration the container declares."""
        declared = self.container.duration
        last = self.last_time
        if self.live or not declared or last is None:
            return None
        start = (self.stream.start_time or 0) * self.time_base
        declared_s = declared / 1_000_000
        if float(last - start) + 2.0 / float(self.fps) < declared_s * 0.95:
            return (f"{self.name} ended at {float(last - start):.2f} s but declares {declared_s:.2f} s: "
                    "the file looks truncated; the outputs hold the frames that could be decoded")
        return None

    def close(self) -> None:
        self.container.close()


def _webcam(index: str) -> tuple[str, Optional[str]]:
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if sys.platform == "darwin":
        return index, "avfoundation"
    return f"video={index}", "dshow"


def open_source(spec: str, fps: float = 30.0) -> Source:
    """Open ``spec`` (see the module doc). ``fps`` is the frame rate given to image inputs."""
    spec = str(spec)
    if spec.startswith("webcam:"):
        url, fmt = _webcam(spec.split(":", 1)[1] or "0")
        return AVSource(url, spec, fmt=fmt, live=True)
    if spec.startswith("lavfi:"):
        return AVSource(spec.split(":", 1)[1], spec, fmt="lavfi", live=True)
    if "://" in spec:
        return AVSource(spec, spec, live=True)
    if spec.startswith("/dev/"):  # a capture device (not a regular file)
        if not Path(spec).exists():
            raise InputError(f"camera device {spec} does not exist; list cameras with `ls /dev/video*`")
        return AVSource(spec, spec, fmt="v4l2" if sys.platform.startswith("linux") else None, live=True)
    path = Path(spec)
    if path.is_dir():
        files = sorted((str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
        if not files:
            raise InputError(f"folder {spec} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return ImageSource(files, spec, fps)
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read {spec}: permission denied")
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageSource([str(path)], spec, fps)
        if path.stat().st_size == 0:
            raise InputError(f"{spec} is empty")
        return AVSource(str(path), spec, live=str(path).startswith("/dev/"))
    if any(c in spec for c in "*?["):
        files = sorted((f for f in globlib.glob(spec) if Path(f).suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
        if not files:
            raise InputError(f"no images match {spec}")
        return ImageSource(files, spec, fps)
    raise InputError(f"input {spec} does not exist; give a video file, an image folder, an image, a glob, "
                     "webcam:N or a stream URL")
