"""Frame sources. Every source decodes lazily and yields one :class:`Frame` at a time.

Specs accepted by :func:`open_source`:
  * a video file FFmpeg can decode (through PyAV)
  * a folder of images (natural sort: 2.png before 10.png), a single image, or a glob pattern
  * ``webcam:N`` (or a device path like /dev/video0)
  * a network stream URL (rtsp://, http(s)://, udp://, ...)
  * ``lavfi:EXPR``: an FFmpeg test source (e.g. ``lavfi:testsrc=size=320x240:rate=10``), a stand-in
    for a live camera

An MP4/MOV file whose index (moov box) was never written, as a recording interrupted by a crash
leaves it, is read by :class:`RecoveredSource` (see :mod:`flashdepth.io.recover`).
"""

from __future__ import annotations

import glob as globlib
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

import numpy as np

from ..errors import InputError, MissingIndexError
from . import recover
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

    def recovery_note(self) -> Optional[str]:
        """A note when the frames were rebuilt from a damaged file (said whatever the run did)."""
        return None

    def warnings(self, read_to_end: bool = True) -> list[str]:
        """What to tell the user after a run: the recovery note, and the truncation warning when
        the run read the source to its end (``read_to_end=False``: it stopped at a frame limit)."""
        notes = [self.recovery_note(), self.truncation_warning() if read_to_end else None]
        return [note for note in notes if note]

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


class RecoveredSource(AVSource):
    """The frames of an MP4/MOV file without index, decoded from its rebuilt raw stream.

    Timestamps are sequential (``pts`` = frame number, ``time_base`` = 1/fps): the index that held
    the real ones is lost. Packets the decoder rejects (other data taken for video) are skipped.
    """

    def __init__(self, plan: recover.Recovery, name: str, fps: float):
        self.plan = plan
        self.elementary = recover.ElementaryStream(plan)
        try:
            super().__init__(self.elementary, name, fmt=plan.format.demuxer)
        except BaseException:
            self.elementary.close()
            raise
        stream_rate = self.stream.codec_context.framerate  # from the parameter sets (H.264 VUI, VOL), if they say
        if plan.fps:
            self.fps, self.rate_from = plan.fps, "the reference's"
        elif stream_rate:
            self.fps, self.rate_from = Fraction(stream_rate), "the stream's"
        else:
            self.fps, self.rate_from = Fraction(fps).limit_denominator(1001), "assumed"
        self.time_base = 1 / self.fps
        self.frame_count = None
        self.frames = self.rejected = 0

    def __iter__(self) -> Iterator[Frame]:
        import av

        try:
            for packet in self.container.demux(self.stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    self.rejected += 1
                    continue
                for frame in decoded:
                    yield Frame(frame.to_ndarray(format="rgb24"), self.frames, pts=self.frames)
                    self.frames += 1
        except av.error.FFmpegError as e:
            raise InputError(f"{self.name}: stopped at frame {self.frames}, the rebuilt stream cannot be read "
                             f"further ({first_line(e)})") from None
        if self.frames == 0:
            plan = self.plan
            problem = f"no frame decodes with {plan.source_of_config} ({plan.format.label}"
            if plan.reference_size:
                problem += f", {plan.reference_size[0]}x{plan.reference_size[1]}"
            problem += ")"
            if plan.reference:
                problem += ": the reference must come from the same camera with the same settings"
            raise MissingIndexError(self.name, plan.media.size, problem, plan.reference,
                                    suggest_reference=plan.reference is None)

    def recovery_note(self) -> Optional[str]:
        if not self.frames:
            return None
        plan, stats = self.plan, self.elementary.stats
        note = (f"recovered {self.frames} frames from {self.name}, a file without index (moov box missing, "
                f"the recording was not finalised): {plan.format.label} decoded with {plan.source_of_config}, "
                f"{float(self.fps):g} fps ({self.rate_from}), sequential timestamps")
        if stats.skipped:
            note += f"; {stats.skipped / 1e3:.0f} kB of other data (audio?) skipped"
        if stats.dropped:
            note += f"; the last {stats.dropped / 1e3:.0f} kB (a frame cut by the end of the file) dropped"
        return note

    def close(self) -> None:
        super().close()
        self.elementary.close()


def _webcam(index: str) -> tuple[str, Optional[str]]:
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if sys.platform == "darwin":
        return index, "avfoundation"
    return f"video={index}", "dshow"


def _glob_images(spec: str) -> list[str]:
    return sorted((f for f in globlib.glob(spec) if Path(f).suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)


def _open_webcam(spec: str, fps: float, reference: Optional[str]) -> Source:
    url, fmt = _webcam(spec.split(":", 1)[1] or "0")
    return AVSource(url, spec, fmt=fmt, live=True)


def _open_device(spec: str, fps: float, reference: Optional[str]) -> Source:
    if not Path(spec).exists():
        raise InputError(f"camera device {spec} does not exist; list cameras with `ls /dev/video*`")
    return AVSource(spec, spec, fmt="v4l2" if sys.platform.startswith("linux") else None, live=True)


def _open_folder(spec: str, fps: float, reference: Optional[str]) -> Source:
    files = sorted((str(p) for p in Path(spec).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
    if not files:
        raise InputError(f"folder {spec} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return ImageSource(files, spec, fps)


def _open_file(spec: str, fps: float, reference: Optional[str]) -> Source:
    path = Path(spec)
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {spec}: permission denied")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource([str(path)], spec, fps)
    if path.stat().st_size == 0:
        raise InputError(f"{spec} is empty")
    media = recover.find_unindexed(path)
    if media is not None:
        return RecoveredSource(recover.plan_recovery(media, spec, reference), spec, fps)
    return AVSource(str(path), spec)


def _open_glob(spec: str, fps: float, reference: Optional[str]) -> Source:
    files = _glob_images(spec)
    if not files:
        raise InputError(f"no images match {spec}")
    return ImageSource(files, spec, fps)


def _url_label(spec: str) -> str:
    parts = urlsplit(spec)
    tail = [p for p in parts.path.split("/") if p]
    return PurePosixPath(tail[-1]).stem if tail else parts.netloc


def _path_label(spec: str) -> str:
    path = PurePosixPath(spec.replace(os.sep, "/"))
    return path.name if os.path.isdir(spec) else path.stem


@dataclass(frozen=True)
class SourceKind:
    """One row of :data:`SOURCE_KINDS`: a kind of input, how it is recognised and opened."""

    name: str
    description: str  # what the user gives, for help and errors
    matches: Callable[[str], bool]  # whether a spec is of this kind (the first row that matches wins)
    open: Callable[[str, float, Optional[str]], Source]  # (spec, fps for images, reference) -> source
    live: bool  # frames come from a device or the network: the spec is not a local path
    label: Callable[[str], str] = _path_label  # a short name of the input (e.g. for output folders)


#: the kinds of input, in the order they are tried; ``open_source`` opens the first that matches
SOURCE_KINDS: dict[str, SourceKind] = {k.name: k for k in (
    SourceKind("webcam", "webcam:N", lambda s: s.startswith("webcam:"), _open_webcam, live=True, label=str),
    SourceKind("lavfi", "lavfi:EXPR (an FFmpeg test source)", lambda s: s.startswith("lavfi:"),
               lambda s, fps, ref: AVSource(s.split(":", 1)[1], s, fmt="lavfi", live=True), live=True, label=str),
    SourceKind("url", "a stream URL", lambda s: "://" in s, lambda s, fps, ref: AVSource(s, s, live=True),
               live=True, label=_url_label),
    SourceKind("device", "a camera device (/dev/videoN)", lambda s: s.startswith("/dev/"), _open_device,
               live=True, label=str),
    SourceKind("folder", "an image folder", lambda s: Path(s).is_dir(), _open_folder, live=False),
    SourceKind("file", "a video file or an image", lambda s: Path(s).is_file(), _open_file, live=False),
    SourceKind("glob", "a glob of images", lambda s: any(c in s for c in "*?["), _open_glob, live=False),
)}


def source_kind(spec: str) -> Optional[SourceKind]:
    """The row of :data:`SOURCE_KINDS` that ``spec`` is (None: a path that does not exist)."""
    spec = str(spec)
    return next((kind for kind in SOURCE_KINDS.values() if kind.matches(spec)), None)


def open_source(spec: str, fps: float = 30.0, reference: Optional[str] = None) -> Source:
    """Open ``spec`` (see the module doc and :data:`SOURCE_KINDS`). ``fps`` is the frame rate given
    to image inputs (and to a recovered video whose stream does not say its rate). ``reference``: a
    complete recording made by the same camera with the same settings, whose decoder configuration
    and frame rate rebuild the frames of an MP4/MOV file without index; not used for any other input."""
    spec = str(spec)
    if reference is not None:
        reference = recover.check_reference(reference)
    kind = source_kind(spec)
    if kind is None:
        raise InputError(f"input {spec} does not exist; give "
                         + ", ".join(k.description for k in SOURCE_KINDS.values()))
    return kind.open(spec, fps, reference)
