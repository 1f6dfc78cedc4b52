"""Watching a stream while it runs: :class:`LiveViewer` (a web page, standard library only) and
:class:`RerunViewer` (the Rerun viewer, ``flashdepth[rerun]``), and their table :data:`VIEWERS`.

Viewers are consumers of a run like the output files (rows of the same type,
:class:`flashdepth.io.sinks.Consumer`), but they may drop frames: the pipeline feeds each through
a queue of its own that drops the oldest frame when the viewer is behind, so a viewer never slows
the run, and an error in a viewer never stops it. Open them with :func:`open_viewers` and pass
them to ``run_to_folder(..., viewers=...)``; or call ``viewer.update(frame, depth)`` yourself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..errors import UnknownNameError
from ..io.sinks import Consumer, OutputOptions, Sink
from .live import LiveViewer
from .rerun_view import RerunViewer


def _open_live(path: Optional[Path], o: OutputOptions) -> LiveViewer:
    return LiveViewer(host=o.address[0], port=o.address[1], colormap=o.colormap).start()


def _open_rerun(path: Optional[Path], o: OutputOptions) -> RerunViewer:
    return RerunViewer(o.unprojection).start()


#: the viewers a run can feed (``run --view`` choices; ``--serve`` opens ``live`` at an address)
VIEWERS: dict[str, Consumer] = {v.name: v for v in (
    Consumer("live", None, "a web page of input and depth side by side (on 127.0.0.1, a free port)",
             _open_live, (("PIL", "pillow", "video"), ("matplotlib", "matplotlib", "video")), drops=True),
    Consumer("rerun", None, "the Rerun viewer, started here: image, depth and the 3D point cloud",
             _open_rerun, (("rerun", "rerun-sdk", "rerun"),), drops=True),
)}


def open_viewers(names: Sequence[str], options: OutputOptions = OutputOptions()) -> list[tuple[Consumer, Sink]]:
    """(row, started viewer) for each name of :data:`VIEWERS` (duplicates dropped); close them
    when the run is over. Unknown names and missing dependencies are errors, before any starts."""
    rows = []
    for name in dict.fromkeys(names):
        if name not in VIEWERS:
            raise UnknownNameError("viewer", name, list(VIEWERS))
        VIEWERS[name].check()
        rows.append(VIEWERS[name])
    opened: list[tuple[Consumer, Sink]] = []
    try:
        for row in rows:
            opened.append((row, row.open(None, options)))
    except BaseException:
        for _, viewer in opened:
            viewer.close()
        raise
    return opened


__all__ = ["LiveViewer", "RerunViewer", "VIEWERS", "open_viewers"]
