"""A batch from start to end: lock the output root, skip what is done, run the rest, record it all."""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import OutputError
from .engines import ENGINES
from .folders import LOCK, check_done, locked, read_marker, remove_partials
from .job import BatchJob, Task
from .manifest import Manifest, Record

#: called in the driver for every manifest line: (record, final); final is False for an attempt
#: that will be retried
RecordObserver = Callable[[Record, bool], None]


@dataclass
class BatchSummary:
    """The final record of each input in this run."""

    outroot: Path
    records: dict[str, Record] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for r in self.records.values() if r.status == status)

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records.values() if r.status == "failed"]


def plan(job: BatchJob, states: dict[str, Record]) -> tuple[list[Task], list[Record]]:
    """Split the job's tasks into those to run and the records of those settled already.

    An input is skipped when its last record says complete, under the same folder name, and the
    folder verifies on disk; a folder in the way that no batch wrote is not replaced unless
    ``overwrite`` (the input is recorded as failed).
    """
    outroot, options = Path(job.outroot), job.options
    todo: list[Task] = []
    settled: list[Record] = []
    for task in job.tasks():
        folder = outroot / task.output
        last = states.get(task.input)
        if (not options.overwrite and last is not None and last.complete and last.output == task.output
                and check_done(folder, options.outputs, last.frames) is None):
            settled.append(Record(task.input, task.output, "skipped", frames=last.frames, attempt=0))
        elif not options.overwrite and folder.exists() and read_marker(folder) is None:
            settled.append(Record(task.input, task.output, "failed", attempt=0,
                                  error=f"{folder} exists and was not written by a batch; move it away, "
                                        "or set overwrite=True to replace it"))
        else:
            todo.append(task)
    return todo, settled


def run_batch(job: BatchJob, on_record: Optional[RecordObserver] = None,
              on_start: Optional[Callable[[int, int], None]] = None,
              on_warning: Optional[Callable[[str], None]] = None) -> BatchSummary:
    """Run ``job`` and return each input's final record; ``OUTROOT/manifest.jsonl`` has every attempt.

    ``on_start(to_process, settled)`` is called once the work is planned; ``on_warning(message)``
    for what the user should know (default: :func:`warnings.warn`), e.g. manifest lines that are
    not records. On Ctrl-C (or any error) the workers are stopped, unfinished outputs removed, and
    the exception propagates: the folders published so far stay, and running the same job again
    completes it. A batch that recorded nothing (its workers could not load the model, say)
    leaves no output root it created, and no manifest it created.
    """
    outroot = Path(job.outroot)
    ENGINES[job.engine].check()
    created = not outroot.exists()
    try:
        outroot.mkdir(parents=True, exist_ok=True)
        probe = outroot / f".flashdepth-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:  # a new folder that cannot be made, or an existing one that cannot be written
        if created:
            shutil.rmtree(outroot, ignore_errors=True)
        raise OutputError(f"cannot write to the output root {outroot}: {e.strerror or e}") from None
    summary = BatchSummary(outroot)
    manifest = Manifest(outroot)
    new_manifest, new_lock = not manifest.path.exists(), not (outroot / LOCK).exists()
    recorded = False
    try:
        with locked(outroot):
            remove_partials(outroot)  # attempts of a run that was killed
            try:
                todo, settled = plan(job, manifest.final())
                if manifest.ignored:
                    message = (f"{manifest.path}: {manifest.ignored} line(s) that are not records were ignored "
                               "(cut short by a crash, or edited)")
                    (on_warning or warnings.warn)(message)
                manifest.open()

                def report(record: Record, final: bool = True) -> None:
                    nonlocal recorded
                    record = manifest.append(record)
                    recorded = True
                    if final:
                        summary.records[record.input] = record
                    if on_record is not None:
                        on_record(record, final)

                if on_start is not None:
                    on_start(len(todo), len(settled))
                for record in settled:
                    report(record)
                if todo:
                    ENGINES[job.engine].run(job, todo, report)
            finally:
                remove_partials(outroot)
                manifest.close()
                if not recorded and new_manifest:
                    manifest.path.unlink(missing_ok=True)
    finally:
        if not recorded and created:
            shutil.rmtree(outroot, ignore_errors=True)  # nothing was done: nothing is left
        elif not recorded and new_lock:
            (outroot / LOCK).unlink(missing_ok=True)
    return summary
