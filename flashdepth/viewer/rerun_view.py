"""Streaming a run into a Rerun viewer (``flashdepth[rerun]``) as it goes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import numpy as np

from ..errors import MissingDependencyError, ViewerError
from ..geometry import Unprojection
from ..io.sources import Frame


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
            port = spawn_viewer()
            self.recording.connect_grpc(f"rerun+http://127.0.0.1:{port}/proxy")
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
            self.logger.log(frame, depth, getattr(stats, "unit", None))  # the run says the stream's unit
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


#: seconds the spawned viewer may take to listen
SPAWN_WAIT_S = 20.0


def spawn_viewer(wait_s: float = SPAWN_WAIT_S) -> int:
    """Start the Rerun viewer (``rerun``) on this machine, listening on 127.0.0.1 only (as the live
    page does), on a free port; returns the port once it listens. It stays open after the run.

    Raises :class:`ViewerError` when it cannot run here: not installed, no display to open a
    window on, or it exits at start (the first line of what it said is in the message)."""
    executable = shutil.which("rerun")
    if executable is None:
        raise ViewerError("cannot start the Rerun viewer: the rerun program is not installed; "
                          "pip install 'flashdepth[rerun]', or save a recording instead")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ViewerError("cannot start the Rerun viewer: no display (DISPLAY and WAYLAND_DISPLAY are not set); "
                          "save a recording (output 'rerun') and open it where there is a screen")
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                   env={**os.environ, "RERUN_APP_ONLY": "true"}, start_new_session=True)
    except OSError as e:
        log.close()
        raise ViewerError(f"cannot start the Rerun viewer: {e.strerror or e}") from None
    deadline = time.monotonic() + wait_s
    with log:
        while True:
            if process.poll() is not None:
                log.seek(0)
                said = [line for line in log.read().decode("utf-8", "replace").splitlines() if "rror" in line]
                reason = said[-1].strip() if said else f"exit code {process.returncode}"
                raise ViewerError(f"cannot start the Rerun viewer: it exited at start ({reason[:200]})")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return port
            except OSError:
                pass
            if time.monotonic() > deadline:
                process.terminate()
                raise ViewerError(f"cannot start the Rerun viewer: it did not listen within {wait_s:g} s")
            time.sleep(0.1)
