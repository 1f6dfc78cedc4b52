"""The streaming pipeline: decode -> model -> encode, in bounded queues.

Decoding and encoding run in their own threads beside the model, so the model does not wait on
I/O and at most ``queue_size`` frames are in flight on each side: memory does not grow with the
length of the video. Whatever happens (end of input, an undecodable frame, Ctrl-C, an error), the
sinks are closed, so every output holds exactly the frames done and stays readable.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .io.sources import Frame, Source
from .session import DepthSession

_END = object()


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


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))
        except ImportError:
            return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class ShotCutDetector:
    """A cut is a large change of the colour histogram of a 64x64 thumbnail between frames."""

    def __init__(self, threshold: float = 0.5, bins: int = 16):
        self.threshold, self.bins, self.previous = threshold, bins, None

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


def run_stream(source: Source, session: DepthSession, sinks: list, queue_size: int = 4,
               reset_on_cut: bool = False, on_frame: Optional[Callable[[RunStats], None]] = None) -> RunStats:
    """Stream every frame of ``source`` through ``session`` into ``sinks``; returns the stats.

    Raises the source's InputError (after closing the sinks) when the input breaks off, and
    KeyboardInterrupt after finalising the outputs.
    """
    inbox: queue.Queue = queue.Queue(maxsize=queue_size)
    outbox: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    errors: dict[str, BaseException] = {}
    stats = RunStats()
    detector = ShotCutDetector() if reset_on_cut else None

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for frame in source:
                if not put(inbox, frame):
                    return
        except BaseException as e:  # handed to the main thread, which re-raises it
            errors["read"] = e
        finally:
            put(inbox, _END)

    def write() -> None:
        try:
            while True:
                item = outbox.get()
                if item is _END:
                    return
                frame, depth = item
                for sink in sinks:
                    sink.write(frame, depth)
        except BaseException as e:
            errors["write"] = e
            stop.set()

    reader = threading.Thread(target=read, name="flashdepth-decode", daemon=True)
    writer = threading.Thread(target=write, name="flashdepth-encode", daemon=True)
    start = time.perf_counter()
    reader.start()
    writer.start()
    try:
        while not stop.is_set():
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                break
            frame: Frame = item
            if detector is not None and detector(frame.image) and stats.frames > 0:
                session.reset()
                stats.resets += 1
            t0 = time.perf_counter()
            depth = session.step(frame.image)
            stats.latencies_ms.append(1000 * (time.perf_counter() - t0))
            if not put(outbox, (frame, depth)):
                break
            stats.frames += 1
            stats.wall_s = time.perf_counter() - start
            if on_frame is not None:
                on_frame(stats)
    finally:
        stop.set()  # the reader stops; the writer still drains what it was given
        # Let the writer finish what it holds, then finalise every sink.
        while True:
            try:
                outbox.put(_END, timeout=0.1)
                break
            except queue.Full:
                if not writer.is_alive():
                    break
        writer.join()
        reader.join(timeout=5)
        for sink in sinks:
            sink.close()
        source.close()
        stats.wall_s = time.perf_counter() - start
    if "write" in errors:
        raise errors["write"]
    if "read" in errors:
        raise errors["read"]
    return stats
