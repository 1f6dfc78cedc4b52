"""The streaming pipeline: decode -> model -> encode, in bounded queues.

Decoding and encoding run in their own threads beside the model, so the model does not wait on
I/O and at most ``queue_size`` frames are in flight on each side: memory does not grow with the
length of the video. Whatever happens (end of input, an undecodable frame, Ctrl-C, an error), the
sinks are closed, so every output holds exactly the frames done and stays readable.

:class:`StreamRun` streams a source into sinks; :func:`run_to_folder` adds the output folder
(existing outputs, a run that produced no frame leaves nothing behind).
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import InputError, OutputError, OutputExistsError
from .geometry import Unprojection
from .io.sinks import DEFAULT_PLY_EVERY, OutputOptions, Sink, get_outputs, open_sinks
from .io.sources import Frame, Source
from .session import DepthSession
from .utils import peak_rss_bytes

_END = object()

#: called on the model's thread after every frame; must return quickly (e.g. keep a reference)
FrameObserver = Callable[[Frame, np.ndarray, "RunStats"], None]


@dataclass
class RunStats:
    frames: int = 0
    wall_s: float = 0.0
    latencies_ms: list = field(default_factory=list)
    resets: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self, peak_cuda_bytes: Optional[int] = None) -> str:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        parts = [f"frames {self.frames}", f"wall {self.wall_s:.1f} s", f"{self.fps:.2f} FPS",
                 f"latency p50 {np.percentile(lat, 50):.0f} ms p95 {np.percentile(lat, 95):.0f} ms",
                 f"peak RSS {peak_rss_bytes() / 2**20:.0f} MiB"]
        if peak_cuda_bytes is not None:
            parts.append(f"peak CUDA {peak_cuda_bytes / 2**20:.0f} MiB")
        if self.resets:
            parts.append(f"{self.resets} shot cut(s)")
        return ", ".join(parts)


class ShotCutDetector:
    """A cut is a large change of the colour histogram of a 64x64 thumbnail between frames."""

    def __init__(self, threshold: float = 0.5, bins: int = 16):
        self.threshold, self.bins = threshold, bins
        self.previous: Optional[np.ndarray] = None

    def __call__(self, image: np.ndarray) -> bool:
        step_h, step_w = max(1, image.shape[0] // 64), max(1, image.shape[1] // 64)
        thumb = image[::step_h, ::step_w]
        thumb = thumb if thumb.ndim == 3 else thumb[..., None]
        scale = 256 if thumb.dtype == np.uint8 else 65536
        hist = np.concatenate([np.bincount((thumb[..., c].astype(np.int64) * self.bins // scale).ravel(),
                                           minlength=self.bins) for c in range(min(3, thumb.shape[-1]))])
        hist = hist / hist.sum()
        cut = self.previous is not None and 0.5 * np.abs(hist - self.previous).sum() > self.threshold
        self.previous = hist
        return bool(cut)


class _Worker(threading.Thread):
    """A daemon thread that hands its exception to the thread that joins it."""

    def __init__(self, name: str, work: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self.work = work
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as e:  # re-raised by the main thread after the outputs are final
            self.error = e


class StreamRun:
    """Stream every frame of ``source`` through ``session`` into ``sinks``.

    ``run()`` returns the stats; they are also on ``self.stats`` when ``run()`` raises (an input
    that breaks off raises its InputError, Ctrl-C raises KeyboardInterrupt), after the sinks are
    closed with the frames done.
    """

    def __init__(self, source: Source, session: DepthSession, sinks: Sequence[Sink], queue_size: int = 4,
                 reset_on_cut: bool = False, max_frames: Optional[int] = None,
                 on_frame: Sequence[FrameObserver] = ()):
        self.source, self.session, self.sinks = source, session, list(sinks)
        self.max_frames, self.on_frame = max_frames, list(on_frame)
        self.detector = ShotCutDetector() if reset_on_cut else None
        self.inbox: queue.Queue = queue.Queue(maxsize=queue_size)
        self.outbox: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self.stats = RunStats()

    def _put(self, q: queue.Queue, item) -> bool:
        """Put unless the run is stopping (never blocks for good on a full queue)."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for i, frame in enumerate(self.source):
                if self.max_frames is not None and i >= self.max_frames:
                    return
                if not self._put(self.inbox, frame):
                    return
        finally:
            self._put(self.inbox, _END)

    def _write(self) -> None:
        try:
            while True:
                item = self.outbox.get()
                if item is _END:
                    return
                frame, depth = item
                for sink in self.sinks:
                    sink.write(frame, depth)
        except BaseException:
            self.stop.set()  # no point computing frames nobody can write
            raise

    def _next_frame(self) -> Optional[Frame]:
        while not self.stop.is_set():
            try:
                item = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            return None if item is _END else item
        return None

    def _infer(self, start: float) -> None:
        stats = self.stats
        while (frame := self._next_frame()) is not None:
            if self.detector is not None and self.detector(frame.image) and stats.frames > 0:
                self.session.reset()
                stats.resets += 1
            t0 = time.perf_counter()
            depth = self.session.step(frame.image)  # (H, W) float32
            stats.latencies_ms.append(1000 * (time.perf_counter() - t0))
            if not self._put(self.outbox, (frame, depth)):
                return
            stats.frames += 1
            stats.wall_s = time.perf_counter() - start
            for observer in self.on_frame:
                observer(frame, depth, stats)

    def _finish(self, writer: _Worker, reader: _Worker) -> None:
        """Stop reading, let the writer drain what it was given, then close every output."""
        self.stop.set()
        while writer.is_alive():
            try:
                self.outbox.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        writer.join()
        reader.join(timeout=5)
        for sink in self.sinks:
            sink.close()
        self.source.close()

    def run(self) -> RunStats:
        reader = _Worker("flashdepth-decode", self._read)
        writer = _Worker("flashdepth-encode", self._write)
        start = time.perf_counter()
        reader.start()
        writer.start()
        try:
            self._infer(start)
        finally:
            self._finish(writer, reader)
            self.stats.wall_s = time.perf_counter() - start
        for worker in (writer, reader):
            if worker.error is not None:
                raise worker.error
        return self.stats


# --------------------------------------------------------------------- runs into a folder
@dataclass(frozen=True)
class RunOptions:
    """What a run writes and how (the library form of ``flashdepth run``'s options)."""

    outputs: tuple[str, ...] = ("vis", "raw")  # names in flashdepth.io.sinks.OUTPUTS
    colormap: str = "inferno"
    unprojection: Unprojection = Unprojection()  # how the 3D outputs (ply, rerun) place points
    ply_every: int = DEFAULT_PLY_EVERY  # a point cloud for frames 0, N, 2N, ...
    reset_on_cut: bool = False  # reset the stream state at detected shot cuts
    max_frames: Optional[int] = None
    overwrite: bool = False  # replace outputs of an earlier run
    queue_size: int = 4

    def __post_init__(self):
        OutputOptions(colormap=self.colormap, unprojection=self.unprojection, ply_every=self.ply_every)  # validates


def check_folder(outdir: str | Path, outputs: Sequence[str], overwrite: bool) -> None:
    """Fail early, creating nothing: unknown outputs, outputs in the way, a folder that cannot be made."""
    outdir = Path(outdir)
    formats = get_outputs(outputs)
    existing = [str(outdir / f.path) for f in formats if (outdir / f.path).exists()]
    if existing and not overwrite:
        raise OutputExistsError(existing)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"output folder {outdir} exists and is not a folder; choose another path")


def prepare_folder(outdir: Path, outputs: Sequence[str], overwrite: bool) -> bool:
    """Make ``outdir`` ready for ``outputs``; returns whether the folder was created here."""
    formats = get_outputs(outputs)
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / ".flashdepth-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write to output folder {outdir}: {e.strerror or e}") from None
    existing = [outdir / f.path for f in formats if (outdir / f.path).exists()]
    if existing and not overwrite:
        if created:
            outdir.rmdir()
        raise OutputExistsError([str(p) for p in existing])
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return created


def _remove_outputs(outdir: Path, outputs: Sequence[str], created: bool) -> None:
    for fmt in get_outputs(outputs):
        path = outdir / fmt.path
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    if created:
        shutil.rmtree(outdir, ignore_errors=True)


def run_to_folder(source: Source, session: DepthSession, outdir: str | Path, options: RunOptions = RunOptions(),
                  on_frame: Sequence[FrameObserver] = (), stats: Optional[RunStats] = None) -> RunStats:
    """Stream ``source`` into the outputs ``options.outputs`` in ``outdir``.

    A run that produces no frame (bad input, an error before the first frame, an empty source)
    leaves nothing behind. Pass ``stats`` to read the frames done when this raises.
    """
    outdir = Path(outdir)
    created = prepare_folder(outdir, options.outputs, options.overwrite)
    run: Optional[StreamRun] = None
    try:
        sinks = open_sinks(outdir, options.outputs,
                           OutputOptions(fps=source.fps, time_base=source.time_base, colormap=options.colormap,
                                         unprojection=options.unprojection, ply_every=options.ply_every))
        run = StreamRun(source, session, sinks, queue_size=options.queue_size, reset_on_cut=options.reset_on_cut,
                        max_frames=options.max_frames, on_frame=on_frame)
        if stats is not None:
            run.stats = stats
        result = run.run()
    except BaseException:
        if run is None:
            source.close()  # a started run closes its source itself
        if run is None or run.stats.frames == 0:
            _remove_outputs(outdir, options.outputs, created)
        raise
    if result.frames == 0:
        _remove_outputs(outdir, options.outputs, created)
        raise InputError(f"{source.name or 'the input'} has no frames")
    return result
