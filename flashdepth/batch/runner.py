"""A batch from start to end: lock the output root, skip what is done, run the rest, record it all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import OutputError
from .engines import ENGINES
from .folders import check_done, locked, read_marker, remove_partials
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
              on_start: Optional[Callable[[int, int], None]] = None) -> BatchSummary:
    """Run ``job`` and return each input's final record; ``OUTROOT/manifest.jsonl`` has every attempt.

    ``on_start(to_process, settled)`` is called once the work is planned. On Ctrl-C (or any
    error) the workers are stopped, unfinished outputs removed, and the exception propagates:
    the folders published so far stay, and running the same job again completes it.
    """
    outroot = Path(job.outroot)
    ENGINES[job.engine].check()
    try:
        outroot.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output root {outroot}: {e.strerror or e}") from None
    summary = BatchSummary(outroot)
    with locked(outroot):
        remove_partials(outroot)  # attempts of a run that was killed
        manifest = Manifest(outroot)
        try:
            todo, settled = plan(job, manifest.final())
            manifest.open()

            def report(record: Record, final: bool = True) -> None:
                record = manifest.append(record)
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
    return summary
