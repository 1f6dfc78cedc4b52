"""The streaming pipeline: decode -> model -> consumers, in bounded queues.

Decoding runs in its own thread beside the model, and so does every consumer (each output file,
each viewer) with a queue of its own, so the model does not wait on I/O and at most
``queue_size`` frames are in flight on each side: memory does not grow with the length of the
video. A consumer's row says whether it may drop frames: the queue of an output file blocks (it
gets every frame, in order), the queue of a viewer drops its oldest frame when full (a viewer
never slows the run, and an error in a viewer never stops it). Whatever happens (end of input,
an undecodable frame, Ctrl-C, an error), the outputs are closed, so each holds exactly the
frames done and stays readable; the exception raised carries the run's :class:`RunStats` as its
``stats`` attribute.

:class:`StreamRun` streams a source into consumers; :func:`run_to_folder` adds the output folder
(existing outputs, a run that produced no frame leaves nothing behind).
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import InputError, OutputError, OutputExistsError
from ..io.sinks import DEFAULT_OUTPUTS, METADATA, OUTPUTS, Consumer, OutputOptions, Sink, get_outputs, open_formats
from ..io.sources import Frame, Source
from ..inference.modes import DEFAULT_MODE, check_run
from ..inference.session import DepthSession
from ..inference.windowed import WindowedRun
from ..utils import as_rgb8, peak_rss_bytes

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
        thumb = as_rgb8(image[::step_h, ::step_w])  # (h, w, 3) uint8 whatever the input's depth and channels
        hist = np.concatenate([np.bincount((thumb[..., c].astype(np.int64) * self.bins // 256).ravel(),
                                           minlength=self.bins) for c in range(3)])
        hist = hist / hist.sum()
        cut = self.previous is not None and 0.5 * np.abs(hist - self.previous).sum() > self.threshold
        self.previous = hist
        return bool(cut)


def session_unit(session) -> str:
    """The name of the unit a session's depth is in (:data:`flashdepth.config.UNITS`): its ``unit``,
    else its model's; a stand-in session with neither is taken as relative inverse depth."""
    unit = getattr(session, "unit", None) or getattr(getattr(session, "config", None), "unit", None)
    return unit.name if unit is not None else "relative-inverse-depth"


def _carry_stats(error: BaseException, stats: "RunStats") -> None:
    """Let whoever catches ``error`` read the frames done (``error.stats``)."""
    try:
        error.stats = stats
    except AttributeError:  # an exception type that takes no attributes
        pass


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


@dataclass(frozen=True)
class FrameStats:
    """What a viewer is told about the run with each frame (a snapshot: the run goes on meanwhile)."""

    frames: int  # frames done, this one included
    latencies_ms: tuple[float, ...]  # the model's time for this frame
    unit: str = "relative-inverse-depth"  # what the depth holds: a name of flashdepth.config.UNITS (the session's)


class _Feed:
    """One consumer on a thread of its own, fed through a queue of its own.

    ``drops=False`` (an output file): ``put`` waits for room, so the consumer gets every frame in
    order, and an error in it stops the run. ``drops=True`` (a viewer): ``put`` never waits; when
    the queue is full its oldest frame is dropped (counted in ``dropped``); an error gives the
    viewer up (``error``) and the run goes on.
    """

    def __init__(self, consumer: Sink, drops: bool, queue_size: int, stop: threading.Event, name: str):
        self.consumer, self.drops, self.stop = consumer, drops, stop
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.error: Optional[BaseException] = None
        self.thread = _Worker(f"flashdepth-{name}", self._work)

    def put(self, item) -> bool:
        """Hand ``item`` over; False when the run is stopping (a waiting put never blocks for good)."""
        if not self.drops:
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False
        while True:
            try:
                self.queue.put_nowait(item)
                return True
            except queue.Full:
                try:
                    self.queue.get_nowait()  # the oldest frame makes room for the newest
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _work(self) -> None:
        while (item := self.queue.get()) is not _END:
            frame, depth, seen = item
            if not self.drops:
                try:
                    self.consumer.write(frame, depth)
                except BaseException:
                    self.stop.set()  # no point computing frames nobody can write
                    raise
            elif self.error is None:
                try:
                    self.consumer.write(frame, depth, seen)
                except Exception as e:  # a viewer that fails is given up; what it watches goes on
                    self.error = e

    def finish(self, viewer_wait_s: float) -> None:
        """Let the consumer take what it was given, then end its thread. An output file is waited
        for; a viewer at most ``viewer_wait_s`` (one that hangs is left to its daemon thread)."""
        while self.thread.is_alive():
            if self.drops:
                self.put(_END)
                break
            try:
                self.queue.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join(timeout=viewer_wait_s if self.drops else None)


class StreamRun:
    """Stream every frame of ``source`` through ``session`` into ``sinks`` and ``viewers``.

    ``sinks``: the output files (each gets every frame; the run closes them). ``viewers``:
    (row, viewer) pairs, e.g. from :func:`flashdepth.viewer.open_viewers`, each fed as its row's
    ``drops`` says (the caller closes them). ``run()`` returns the stats; when it raises (an
    input that breaks off raises its InputError, Ctrl-C raises KeyboardInterrupt), the sinks are
    closed with the frames done and the exception carries the stats as ``stats`` (also on
    ``self.stats``). ``viewer_errors()`` says which viewers were given up and why.
    """

    def __init__(self, source: Source, session: DepthSession, sinks: Sequence[Sink], queue_size: int = 4,
                 reset_on_cut: bool = False, max_frames: Optional[int] = None,
                 on_frame: Sequence[FrameObserver] = (), viewers: Sequence[tuple[Consumer, Sink]] = (),
                 mode: str = DEFAULT_MODE):
        self.source, self.session, self.sinks = source, session, list(sinks)
        # ``mode`` (a row of flashdepth.inference.modes.MODES): a windowed one reads ahead (not a live source)
        self.windowed = WindowedRun(session) if check_run(mode, source, reset_on_cut).lookahead else None
        self.max_frames, self.on_frame = max_frames, list(on_frame)
        self.detector = ShotCutDetector() if reset_on_cut else None
        self.inbox: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self.feeds = [_Feed(sink, False, queue_size, self.stop, f"output{i}") for i, sink in enumerate(self.sinks)]
        self.viewer_feeds = [(row, _Feed(viewer, row.drops, queue_size, self.stop, f"view-{row.name}"))
                             for row, viewer in viewers]
        self.feeds += [feed for _, feed in self.viewer_feeds]
        self.stats = RunStats()
        self.unit = session_unit(session)  # told to the viewers with each frame
        self.viewer_wait_s = 5.0  # the longest the end of a run waits for a viewer to take its last frames

    def viewer_errors(self) -> list[tuple[str, BaseException]]:
        """(viewer name, error) of each viewer given up during the run."""
        errors = [(row.name, feed.error or getattr(feed.consumer, "error", None)) for row, feed in self.viewer_feeds]
        return [(name, error) for name, error in errors if error is not None]

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

    def _next_frame(self) -> Optional[Frame]:
        while not self.stop.is_set():
            try:
                item = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            return None if item is _END else item
        return None

    def _ready_frame(self) -> Optional[Frame]:
        """The next frame if the reader has one waiting, else None (never waits)."""
        try:
            item = self.inbox.get_nowait()
        except queue.Empty:
            return None
        if item is _END:
            self.inbox.put(_END)  # seen again by _next_frame, which ends the run
            return None
        return item

    def _emit(self, frame: Frame, depth: np.ndarray, t0: float, start: float) -> bool:
        stats = self.stats
        stats.latencies_ms.append(1000 * (time.perf_counter() - t0))
        item = (frame, depth, FrameStats(stats.frames + 1, (stats.latencies_ms[-1],), self.unit))
        if not all([feed.put(item) for feed in self.feeds]):
            return False
        stats.frames += 1
        stats.wall_s = time.perf_counter() - start
        for observer in self.on_frame:
            observer(frame, depth, stats)
        return True

    def _is_cut(self, frame: Frame) -> bool:
        """Called once per frame, in order (the detector compares each frame with the one before)."""
        return self.detector is not None and self.detector(frame.image)

    def _infer(self, start: float) -> None:
        """One frame in flight while the reader has the next one waiting: frame t+1 is prepared
        (checked, resized, copied to the device) while frame t computes, and the depth of frame t
        is handed to the outputs while frame t+1 computes. When no frame is waiting (a live source,
        or a decoder slower than the model) the frame is finished at once, so pipelining never
        adds a frame of latency. Outputs and their order are those of one frame at a time."""
        if self.windowed is not None:
            return self._infer_windowed(start)
        if not callable(getattr(self.session, "submit", None)):
            return self._infer_one_at_a_time(start)
        session, stats = self.session, self.stats
        frame = self._next_frame()
        cut = frame is not None and self._is_cut(frame)
        while frame is not None:
            if cut and stats.frames > 0:
                # a cut within the stream (an aligned session also restarts its fit); nothing is in
                # flight here: the frame before was finished
                (getattr(session, "cut", None) or session.reset)()
                stats.resets += 1
            t0 = time.perf_counter()
            session.submit(frame.image)  # nothing was in flight: returns None
            following = self._ready_frame()
            cut = following is not None and self._is_cut(following)
            while following is not None and not cut:
                t1 = time.perf_counter()
                try:
                    depth = session.submit(following.image)  # (H, W): frame's depth; following computes
                except BaseException:
                    if session.in_flight:  # following was refused before it started: frame comes first
                        self._emit(frame, session.flush(), t0, start)
                    raise
                if not self._emit(frame, depth, t0, start):
                    session.flush()
                    return
                frame, t0 = following, t1
                following = self._ready_frame()
                cut = following is not None and self._is_cut(following)
            if not self._emit(frame, session.flush(), t0, start):  # (H, W) float32
                return
            if following is None:
                frame = self._next_frame()
                cut = frame is not None and self._is_cut(frame)
            else:
                frame = following  # a scene cut: reset at the top

    def _infer_one_at_a_time(self, start: float) -> None:
        """For a session that only offers ``step`` (e.g. a stand-in of one's own): each frame is
        finished before the next is read; outputs as with one frame in flight."""
        session, stats = self.session, self.stats
        while (frame := self._next_frame()) is not None:
            if self._is_cut(frame) and stats.frames > 0:
                (getattr(session, "cut", None) or session.reset)()
                stats.resets += 1
            t0 = time.perf_counter()
            if not self._emit(frame, session.step(frame.image), t0, start):  # (H, W) float32
                return

    def _infer_windowed(self, start: float) -> None:
        """As :meth:`_infer`, the depths from windows: they come out in bursts, one window behind
        the frames read; a frame's latency is the time spent getting its depth (window 0's counts
        the whole first window)."""
        depths = self.windowed.pairs(iter(self._next_frame, None), image=lambda frame: frame.image)
        while True:
            t0 = time.perf_counter()
            frame, depth = next(depths, (None, None))
            if frame is None:
                return
            if not self._emit(frame, depth, t0, start):
                return

    def _finish(self, reader: _Worker) -> None:
        """Stop reading, let every consumer take what it was given, then close the outputs."""
        self.stop.set()
        for feed in self.feeds:
            feed.finish(self.viewer_wait_s)
        reader.join(timeout=5)
        for sink in self.sinks:
            sink.close()
        self.source.close()

    def run(self) -> RunStats:
        reader = _Worker("flashdepth-decode", self._read)
        start = time.perf_counter()
        reader.start()
        for feed in self.feeds:
            feed.thread.start()
        try:
            try:
                self._infer(start)
            finally:
                self._finish(reader)
                self.stats.wall_s = time.perf_counter() - start
            for worker in [feed.thread for feed in self.feeds if not feed.drops] + [reader]:
                if worker.error is not None:
                    raise worker.error
        except BaseException as e:
            _carry_stats(e, self.stats)
            raise
        return self.stats


# --------------------------------------------------------------------- runs into a folder
@dataclass(frozen=True)
class RunOptions:
    """What a run writes and how (the library form of ``flashdepth run``'s options).

    ``outputs`` are names of :data:`flashdepth.io.sinks.OUTPUTS` (checked here, with their optional
    dependencies); ``output_options`` what the writers and viewers need (colour map, how 3D outputs
    place points, ``ply_every``, the live page's address); the source's timing is added by the run.
    """

    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    output_options: OutputOptions = OutputOptions()
    reset_on_cut: bool = False  # reset the stream state at detected shot cuts
    max_frames: Optional[int] = None
    overwrite: bool = False  # replace outputs of an earlier run
    queue_size: int = 4
    mode: str = DEFAULT_MODE  # a row of flashdepth.inference.modes.MODES: streaming, or windowed (files and folders)

    def __post_init__(self):
        names = (self.outputs,) if isinstance(self.outputs, str) else self.outputs
        object.__setattr__(self, "outputs", tuple(f.name for f in get_outputs(names)))  # the one check of the names
        check_run(self.mode, reset_on_cut=self.reset_on_cut)

    @property
    def formats(self) -> list[Consumer]:
        """The rows of :data:`flashdepth.io.sinks.OUTPUTS` of ``outputs``."""
        return [OUTPUTS[name] for name in self.outputs]


def _paths(options: RunOptions) -> list[str]:
    """What a run writes inside its folder: each output's path and the metadata file."""
    return [f.path for f in options.formats] + [METADATA]


def _in_the_way(outdir: Path, options: RunOptions) -> list[Path]:
    return [outdir / path for path in _paths(options) if (outdir / path).exists()]


def check_folder(outdir: str | Path, options: RunOptions) -> None:
    """Fail early, creating nothing: outputs in the way, a path that is not a folder."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"output folder {outdir} exists and is not a folder; choose another path")
    existing = _in_the_way(outdir, options)
    if existing and not options.overwrite:
        raise OutputExistsError([str(p) for p in existing])


def prepare_folder(outdir: Path, options: RunOptions) -> bool:
    """Make ``outdir`` ready for ``options.outputs``; returns whether the folder was created here."""
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / ".flashdepth-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write to output folder {outdir}: {e.strerror or e}") from None
    try:
        check_folder(outdir, options)
    except OutputExistsError:
        if created:
            outdir.rmdir()
        raise
    for path in _in_the_way(outdir, options):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return created


def _remove_outputs(outdir: Path, options: RunOptions, created: bool) -> None:
    for name in _paths(options):
        path = outdir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    if created:
        shutil.rmtree(outdir, ignore_errors=True)


def run_to_folder(source: Source, session: DepthSession, outdir: str | Path, options: RunOptions = RunOptions(),
                  on_frame: Sequence[FrameObserver] = (), viewers: Sequence[tuple[Consumer, Sink]] = ()) -> RunStats:
    """Stream ``source`` into the outputs ``options.outputs`` in ``outdir``, and into ``viewers``
    ((row, viewer) pairs from :func:`flashdepth.viewer.open_viewers`; closed by the caller).

    A run that produces no frame (bad input, an error before the first frame, an empty source)
    leaves nothing behind. An exception raised here carries the run's stats as ``stats`` (the
    frames done are in the outputs).
    """
    outdir = Path(outdir)
    stats = RunStats()
    try:
        created = prepare_folder(outdir, options)
        run: Optional[StreamRun] = None
        try:
            timing = replace(options.output_options, fps=source.fps, time_base=source.time_base,
                             unit=session_unit(session),  # the outputs record and place the stream's unit
                             notes=tuple(filter(None, [getattr(session, "describe", lambda: None)()])))
            sinks = open_formats(outdir, options.formats, timing)
            run = StreamRun(source, session, sinks, queue_size=options.queue_size, reset_on_cut=options.reset_on_cut,
                            max_frames=options.max_frames, on_frame=on_frame, viewers=viewers, mode=options.mode)
            stats = run.stats
            result = run.run()
        except BaseException:
            if run is None:
                source.close()  # a started run closes its source itself
            if stats.frames == 0:
                _remove_outputs(outdir, options, created)
            raise
        if result.frames == 0:
            _remove_outputs(outdir, options, created)
            raise InputError(f"{source.name or 'the input'} has no frames")
    except BaseException as e:
        _carry_stats(e, stats)
        raise
    return result
