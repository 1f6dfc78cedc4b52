"""The one table of batch engines: where the workers run.

An engine module has ``run(job, tasks, report)``: it processes every task with workers that each
load the model once, calls ``report(record, final)`` for every attempt from the driver's process
(``final`` is False when the input will be tried again), and returns when every task has a final
record. It stops its workers before it returns or raises (Ctrl-C included).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import require_modules


@dataclass(frozen=True)
class EngineOption:
    """A setting of :class:`flashdepth.batch.BatchJob` that only some engines take (None: unset)."""

    name: str  # the BatchJob field (the command line's flag is --name-with-dashes)
    description: str
    type: type = str
    metavar: str = "VALUE"
    check: Optional[Callable[[Any], Optional[str]]] = None  # a value -> what to give instead, or None if good


def _at_least_zero(value: Any) -> Optional[str]:
    return None if isinstance(value, (int, float)) and value >= 0 else "give 0 or more"


GPUS_PER_WORKER = EngineOption("gpus_per_worker", "GPUs each worker reserves (default 1 when the cluster has GPUs, "
                               "else 0)", float, "G", _at_least_zero)
RAY_ADDRESS = EngineOption("ray_address", "the cluster to join ('auto', or ray://HOST:10001); default: start Ray here",
                           str, "ADDR")


@dataclass(frozen=True)
class Engine:
    name: str
    description: str
    module: str  # flashdepth.batch.<module> with run(job, tasks, report)
    needs: tuple[tuple[str, str, str], ...] = ()  # (module, pip package, flashdepth extra)
    options: tuple[EngineOption, ...] = ()  # the settings only this engine (and others that list them) takes
    assigns_gpus: bool = False  # the engine gives each worker its GPUs: a fixed device='cuda:N' is refused

    def check(self) -> None:
        """Raise MissingDependencyError before a batch starts rather than when its workers do."""
        require_modules(f"the {self.name!r} batch engine", self.needs)

    def run(self, job, tasks, report) -> None:
        self.check()
        importlib.import_module(f"flashdepth.batch.{self.module}").run(job, tasks, report)


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("local", "worker processes on this machine: one per GPU, or one per 4 CPU cores", "local"),
    Engine("ray", "Ray actors, on a Ray instance started here or on an existing cluster", "ray_engine",
           (("ray", "ray", "ray"),), options=(GPUS_PER_WORKER, RAY_ADDRESS), assigns_gpus=True),
)}


def engine_options() -> list[EngineOption]:
    """Every engine's options, each once (in table order)."""
    return list(dict.fromkeys(option for engine in ENGINES.values() for option in engine.options))


def engines_taking(option: EngineOption) -> list[str]:
    return [engine.name for engine in ENGINES.values() if option in engine.options]
