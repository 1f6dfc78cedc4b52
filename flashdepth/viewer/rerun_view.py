"""Streaming a run into a Rerun viewer (``flashdepth[rerun]``) as it goes."""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

import numpy as np

from ..errors import MissingDependencyError, ViewerError
from ..geometry import Unprojection
from ..io.sources import Frame
from ..utils import first_line


class RerunViewer:
    """A consumer that logs frames to Rerun: by default into a viewer it spawns (``rerun`` on
    this machine), or into ``recording``, a ``rerun.RecordingStream`` set up by the caller
    (``connect_grpc(...)`` to a remote viewer, ``save(...)``, ...).

    ``write()`` / ``update()`` log one frame on the caller's thread. In a run it is fed by the
    pipeline through a queue of its own that drops the oldest frame when the viewer is behind
    (row ``rerun`` of :data:`flashdepth.viewer.VIEWERS`), so a slow viewer never slows the run.
    A viewer that fails or goes away is given up (:attr:`error`), never raised: it must not stop
    what it watches. Same entities as the ``rerun`` output (:mod:`flashdepth.io.rerun_sink`),
    with uncompressed images.
    """

    def __init__(self, unprojection: Unprojection = Unprojection(), recording: Any = None):
        if importlib.util.find_spec("rerun") is None:
            raise MissingDependencyError("the Rerun viewer", "rerun-sdk", "rerun")
        from ..io.rerun_sink import RerunLogger, new_recording

        self.spawn = recording is None
        self.recording = new_recording() if recording is None else recording
        self.unprojection = unprojection
        self._updates = 0
        self._logger_class = RerunLogger
        self.logger: Optional[Any] = None
        self.error: Optional[BaseException] = None  # why the viewer was given up, if it was

    def start(self) -> "RerunViewer":
        if self.logger is not None:
            return self
        if self.spawn:
            try:
                self.recording.spawn()
            except Exception as e:
                raise ViewerError(f"cannot start the Rerun viewer: {first_line(e)}; install it with "
                                  "pip install 'flashdepth[rerun]' or save a recording instead") from None
        self.logger = self._logger_class(self.recording, self.unprojection, compress=False)
        return self

    def update(self, frame: Any, depth: np.ndarray, stats: Any = None) -> None:
        """Log (frame, depth). ``frame``: a :class:`flashdepth.io.Frame` or an (H, W, 3) image."""
        if not isinstance(frame, Frame):  # a bare image: number the frames here
            frame = Frame(frame, self._updates)
        self._updates += 1
        if self.logger is None or self.error is not None:
            return
        try:
            self.logger.log(frame, depth)
        except Exception as e:  # a viewer that went away must not stop the run
            self.error = e

    write = update
    __call__ = update

    def close(self) -> None:
        """Flush and disconnect (the spawned viewer stays open). A viewer that cannot be reached
        is recorded in :attr:`error`, not raised."""
        if self.logger is None:
            return
        logger, self.logger = self.logger, None
        try:
            logger.close()
        except Exception as e:
            self.error = self.error or e

    def __enter__(self) -> "RerunViewer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
