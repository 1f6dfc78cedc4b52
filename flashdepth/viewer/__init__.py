"""Watching a stream while it runs: :class:`LiveViewer` (a web page, standard library only) and
:class:`RerunViewer` (the Rerun viewer, ``flashdepth[rerun]``). Both are observers of a run:
``run_to_folder(..., on_frame=[viewer])``, or call ``viewer.update(frame, depth)`` yourself."""

from .live import LiveViewer
from .rerun_view import RerunViewer

__all__ = ["LiveViewer", "RerunViewer"]
