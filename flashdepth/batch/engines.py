"""The one table of batch engines: where the workers run.

An engine module has ``run(job, tasks, report)``: it processes every task with workers that each
load the model once, calls ``report(record, final)`` for every attempt from the driver's process
(``final`` is False when the input will be tried again), and returns when every task has a final
record. It stops its workers before it returns or raises (Ctrl-C included).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import require_modules


@dataclass(frozen=True)
class Engine:
    name: str
    description: str
    module: str  # flashdepth.batch.<module> with run(job, tasks, report)
    needs: tuple[tuple[str, str, str], ...] = ()  # (module, pip package, flashdepth extra)

    def check(self) -> None:
        """Raise MissingDependencyError before a batch starts rather than when its workers do."""
        require_modules(f"the {self.name!r} batch engine", self.needs)

    def run(self, job, tasks, report) -> None:
        self.check()
        importlib.import_module(f"flashdepth.batch.{self.module}").run(job, tasks, report)


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("local", "worker processes on this machine: one per GPU, or one per 4 CPU cores", "local"),
    Engine("ray", "Ray actors, on a Ray instance started here or on an existing cluster", "ray_engine",
           (("ray", "ray", "ray"),)),
)}
