"""What a batch does: the job description, and each input's task with its stable output name."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from typing import Optional

from ..errors import ConfigError, OptionValueError, UnknownNameError
from ..io.sources import SOURCE_KINDS, SourceKind, source_kind
from ..apps.pipeline import RunOptions
from ..metric import MetricFrom
from ..inference.session import SessionSpec
from .engines import ENGINES, engine_options, engines_taking

#: names an input's folder cannot take: the files the batch keeps beside the folders
RESERVED_NAMES = frozenset({"manifest.jsonl"})
_NAME_LIMIT = 80


@dataclass(frozen=True)
class BatchJob:
    """A corpus of inputs, each streamed start to end into ``outroot/<name>/`` as ``run`` would.

    ``options.overwrite`` redoes inputs that are already done (their folders are replaced);
    without it a second run of the same job does only what is not done yet.
    """

    inputs: tuple[str, ...]
    outroot: str
    session: SessionSpec = field(default_factory=SessionSpec)
    options: RunOptions = field(default_factory=RunOptions)
    fps: float = 30.0  # frame rate given to image inputs (and recovered videos that do not say theirs)
    reference: Optional[str] = None  # a complete recording that recovers unfinalised MP4s (open_source's)
    engine: str = "local"  # a name in flashdepth.batch.ENGINES
    workers: Optional[int] = None  # default: one per GPU, or one per 4 CPU cores
    retries: int = 1  # new attempts for an input whose worker died while processing it
    # settings of some engines only (the rows' `options` in ENGINES say which):
    gpus_per_worker: Optional[float] = None  # GPUs each worker reserves (default 1 if the cluster has GPUs)
    ray_address: Optional[str] = None  # an existing cluster ("auto", "ray://host:10001"); None starts one here

    def __post_init__(self) -> None:
        # Paths made absolute here: workers (Ray actors especially) need not share our working folder.
        object.__setattr__(self, "inputs", tuple(str(i) for i in self.inputs))
        object.__setattr__(self, "outroot", os.path.abspath(self.outroot))
        if self.reference:
            object.__setattr__(self, "reference", os.path.abspath(self.reference))
        if self.session.checkpoint:
            checkpoint = os.path.abspath(self.session.checkpoint)
            object.__setattr__(self, "session", replace(self.session, checkpoint=checkpoint))
        if self.session.metric_from:  # a metric checkpoint given by path: absolute too
            spec = MetricFrom.parse(self.session.metric_from)
            if os.path.exists(spec.model):
                absolute = str(MetricFrom(os.path.abspath(spec.model), spec.every))
                object.__setattr__(self, "session", replace(self.session, metric_from=absolute))
        if not self.inputs:
            raise ConfigError("a batch needs at least one input; give inputs=[...]")
        if self.engine not in ENGINES:
            raise UnknownNameError("engine", self.engine, list(ENGINES))
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries={self.retries!r} must be a whole number >= 0")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"workers={self.workers!r} must be a whole number >= 1 (or None for the default)")
        engine = ENGINES[self.engine]
        for option in engine_options():
            value = getattr(self, option.name)
            if value is None:
                continue
            if option not in engine.options:
                owners = " or ".join(repr(name) for name in engines_taking(option))
                raise ConfigError(f"{option.name} is a setting of engine={owners}; set that engine or leave it None")
            problem = option.check(value) if option.check is not None else None
            if problem is not None:
                raise OptionValueError(option.name, value, problem)
        if engine.assigns_gpus and self.session.device and self.session.device.startswith("cuda:"):
            raise ConfigError(f"device={self.session.device!r}: the {engine.name} engine gives each worker its GPUs; "
                              "use device='auto' or 'cuda'")

    def tasks(self) -> list["Task"]:
        """One task per distinct input, in the order given, each with its output folder's name."""
        keys = list(dict.fromkeys(input_key(i) for i in self.inputs))
        return [Task(key, name) for key, name in zip(keys, output_names(keys))]


@dataclass(frozen=True)
class Task:
    """One input to process start to end, and the folder under the output root it goes to."""

    input: str  # as opened: an absolute path for local files and folders, else the spec as given
    output: str  # folder name under the output root
    attempt: int = 1


def _live_kind(spec: str) -> Optional[SourceKind]:
    kind = source_kind(spec)
    return kind if kind is not None and kind.live else None


def input_key(spec: str) -> str:
    """The input as workers open it: local paths made absolute (workers may run elsewhere), live
    inputs (cameras, streams: the ``live`` rows of the source table) as given."""
    spec = str(spec)
    return spec if _live_kind(spec) is not None else os.path.abspath(spec)


def _base_name(key: str) -> str:
    kind = _live_kind(key) or SOURCE_KINDS["file"]  # a local path (existing or not) is named by its file name
    stem = kind.label(key)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", stem).strip("._")[:_NAME_LIMIT]
    return name or "input"


def _short_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def output_names(keys: list[str]) -> list[str]:
    """A folder name per input: its file or folder name, unique and stable.

    Names that two inputs would share (case-insensitively: ``a/clip.mp4`` and ``b/clip.mov``)
    get a short hash of the full input, so the same list always gives the same folders.
    """
    bases = [_base_name(k) for k in keys]
    shared: dict[str, set[str]] = {}
    for key, base in zip(keys, bases):
        shared.setdefault(base.lower(), set()).add(key)
    names = []
    for key, base in zip(keys, bases):
        if len(shared[base.lower()]) > 1 or base.lower() in RESERVED_NAMES:
            base = f"{base}-{_short_hash(key)}"
        names.append(base)
    if len({n.lower() for n in names}) != len(names):  # a base that looks like another's hashed name
        names = [f"{_base_name(k)}-{_short_hash(k)}" for k in keys]
    return names
