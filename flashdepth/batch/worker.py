"""One batch worker: loads the model once, then turns inputs into published output folders.

Both engines run this in their worker processes; what it writes for an input is what
``flashdepth run`` writes (the same :func:`flashdepth.apps.pipeline.run_to_folder`), plus the marker.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

from .. import __version__
from ..device import bind_device, resolve_device
from ..io.sources import open_source
from ..apps.pipeline import run_to_folder
from ..utils import first_line
from .folders import PARTIAL, publish, start_partial, write_marker
from .job import BatchJob, Task
from .manifest import Record


class BatchWorker:
    """Holds one model; ``process(task)`` never raises for a bad input: it returns a failed record."""

    def __init__(self, job: BatchJob, device: Optional[str] = None, threads: Optional[int] = None):
        import torch

        if threads:  # workers sharing the CPU: each takes its share of the cores (no more than torch would)
            torch.set_num_threads(max(1, min(threads, torch.get_num_threads())))
        self.job = job
        self.outroot = Path(job.outroot)
        # this process serves one device: make it current first, so that nothing here (staging,
        # the session's threads) opens a context on cuda:0 or uses cuda:0's stream
        bind_device(resolve_device(device))
        self.session = job.session.open(device)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, task: Task) -> Record:
        job, start = self.job, time.perf_counter()
        partial = self.outroot / PARTIAL / "none"
        try:
            partial = start_partial(self.outroot, task.output, self.name)
            self.session.reset()  # every input is a stream of its own
            source = open_source(task.input, fps=job.fps, reference=job.reference)
            stats = run_to_folder(source, self.session, partial, job.options)
            warning = "; ".join(source.warnings(read_to_end=not job.options.max_frames)) or None
            seconds = time.perf_counter() - start
            write_marker(partial, {"input": task.input, "frames": stats.frames, "outputs": list(job.options.outputs),
                                   "model": self.session.config.name, "weights": job.session.weights,
                                   "seconds": round(seconds, 3), "flashdepth": __version__})
            publish(partial, self.outroot / task.output)
        except Exception as e:  # the input failed, not the worker: say why and go on with the next
            shutil.rmtree(partial, ignore_errors=True)
            frames = getattr(getattr(e, "stats", None), "frames", 0)  # the run's errors carry its stats
            return Record(task.input, task.output, "failed", frames=frames,
                          seconds=time.perf_counter() - start, worker=self.name, attempt=task.attempt,
                          error=f"{type(e).__name__}: {first_line(e)}")
        seconds = time.perf_counter() - start
        return Record(task.input, task.output, "done", frames=stats.frames, seconds=seconds,
                      fps=stats.frames / seconds if seconds > 0 else 0.0, worker=self.name, attempt=task.attempt,
                      warning=warning)
