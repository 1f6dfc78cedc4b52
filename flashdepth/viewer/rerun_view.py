"""Streaming a run into a Rerun viewer (``flashdepth[rerun]``) as it goes."""

from __future__ import annotations

import importlib.util
import queue
import threading
from typing import Any, Optional

import numpy as np

from ..errors import MissingDependencyError, ViewerError
from ..geometry import Unprojection
from ..io.sources import Frame
from ..utils import first_line

_END = object()


class RerunViewer:
    """An observer that logs frames to Rerun: by default into a viewer it spawns (``rerun`` on
    this machine), or into ``recording``, a ``rerun.RecordingStream`` set up by the caller
    (``connect_grpc(...)`` to a remote viewer, ``save(...)``, ...).

    ``update()`` hands the frame to a thread of its own through a queue of ``queue_size``
    frames and drops the frame when the queue is full (counted in :attr:`dropped`), so a slow
    viewer never slows the run. Same entities as the ``rerun`` output
    (:mod:`flashdepth.io.rerun_sink`), with uncompressed images.
    """

    def __init__(self, unprojection: Unprojection = Unprojection(), recording: Any = None, queue_size: int = 4):
        if importlib.util.find_spec("rerun") is None:
            raise MissingDependencyError("the Rerun viewer", "rerun-sdk", "rerun")
        from ..io.rerun_sink import RerunLogger, new_recording

        self.spawn = recording is None
        self.recording = new_recording() if recording is None else recording
        self.unprojection = unprojection
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self._updates = 0
        self._logger_class = RerunLogger
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    def start(self) -> "RerunViewer":
        if self._thread is not None:
            return self
        if self.spawn:
            try:
                self.recording.spawn()
            except Exception as e:
                raise ViewerError(f"cannot start the Rerun viewer: {first_line(e)}; install it with "
                                  "pip install 'flashdepth[rerun]' or save a recording instead") from None
        self.logger = self._logger_class(self.recording, self.unprojection, compress=False)
        self._thread = threading.Thread(target=self._work, name="flashdepth-rerun", daemon=True)
        self._thread.start()
        return self

    def _work(self) -> None:
        while (item := self.queue.get()) is not _END:
            if self.error is None:
                try:
                    self.logger.log(*item)
                except Exception as e:  # a viewer that went away must not stop the run
                    self.error = e

    def update(self, frame: Any, depth: np.ndarray, stats: Any = None) -> None:
        """Queue (frame, depth) for the viewer, or drop it when the viewer is behind. ``frame``: a
        :class:`flashdepth.io.Frame` or an (H, W, 3) image."""
        if not isinstance(frame, Frame):  # a bare image: number the frames here
            frame = Frame(frame, self._updates)
        self._updates += 1
        try:
            self.queue.put_nowait((frame, depth))
        except queue.Full:
            self.dropped += 1

    __call__ = update

    def close(self) -> None:
        """Log what is queued, then flush and disconnect (the spawned viewer stays open)."""
        if self._thread is None:
            return
        self.queue.put(_END)
        self._thread.join()
        self._thread = None
        self.logger.close()

    def __enter__(self) -> "RerunViewer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
