"""Depth for a whole corpus: every input streamed start to end into ``OUTROOT/<name>/``.

>>> from flashdepth.batch import BatchJob, run_batch
>>> from flashdepth.inference.session import SessionSpec
>>> job = BatchJob(inputs=["a.mp4", "b.mp4", "frames/"], outroot="depth/",
...                session=SessionSpec(model="flashdepth-s"), workers=2)
>>> summary = run_batch(job)          # OUTROOT/manifest.jsonl records every attempt

Each input is one stream, processed by one worker that loaded the model once; its folder holds
what ``flashdepth run`` writes, published by a rename once complete. Running the same job again
skips what is done (recorded as done and verified on disk) and redoes the rest. Engines (the
:data:`ENGINES` table): ``local`` worker processes, or ``ray`` actors (``flashdepth[ray]``).
The engine table imports without torch (the command line builds its choices from it); the
rest is imported on first use.
"""

from __future__ import annotations

from .engines import ENGINES, Engine
from ..utils import lazy_attributes

_LAZY = {
    "BatchJob": "job", "Task": "job", "input_key": "job", "output_names": "job",
    "MANIFEST": "manifest", "STATUSES": "manifest", "Manifest": "manifest", "Record": "manifest",
    "MARKER": "folders", "PARTIAL": "folders", "check_done": "folders",
    "BatchSummary": "runner", "plan": "runner", "run_batch": "runner",
}

__all__ = ["ENGINES", "Engine", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
