"""The manifest: ``OUTROOT/manifest.jsonl``, one JSON line per input and attempt.

Append-only and flushed line by line, written by the driver alone. The final state of an input is
its last line; a line cut short by a crash is ignored when read.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional

MANIFEST = "manifest.jsonl"
#: done: processed and published in this run; skipped: already done by an earlier run; failed: not done
STATUSES = ("done", "failed", "skipped")


@dataclass(frozen=True)
class Record:
    """One attempt at one input (one line of the manifest)."""

    input: str  # as opened: an absolute path for local files and folders
    output: str  # the folder's name under the output root
    status: str  # one of STATUSES
    frames: int = 0  # frames written (failed: frames done before the error; nothing is published)
    seconds: float = 0.0  # wall time of the attempt, opening the input to publishing its folder
    fps: float = 0.0  # frames / seconds
    worker: str = ""  # host:pid of the worker process
    error: Optional[str] = None  # one line, for failures
    attempt: int = 1  # attempts at this input in this run (0 for skipped)
    warning: Optional[str] = None  # e.g. a video that looks truncated (its decodable frames are done)
    time: str = ""  # UTC time the line was written

    @property
    def complete(self) -> bool:
        """True when the input's outputs were finished (now or by an earlier run)."""
        return self.status in ("done", "skipped")

    def to_json(self) -> str:
        row = asdict(self)
        row["seconds"], row["fps"] = round(self.seconds, 3), round(self.fps, 2)
        return json.dumps(row, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Optional["Record"]:
        """The record of a line, or None for a line that is not one (cut short, edited)."""
        try:
            row = json.loads(line)
            known = {f.name for f in fields(cls)}
            record = cls(**{k: v for k, v in row.items() if k in known})
        except (json.JSONDecodeError, TypeError):
            return None
        return record if record.status in STATUSES and isinstance(record.input, str) else None


class Manifest:
    """Appends records to ``outroot/manifest.jsonl``; reads the final state of each input."""

    def __init__(self, outroot: str | Path):
        self.path = Path(outroot) / MANIFEST
        self.file = None

    def final(self) -> dict[str, Record]:
        """Input -> its last record."""
        states: dict[str, Record] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    record = Record.from_json(line)
                    if record is not None:
                        states[record.input] = record
        return states

    def open(self) -> None:
        """Open for appending (creating the file)."""
        if self.file is None:
            torn = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
            self.file = open(self.path, "a", encoding="utf-8")
            if torn:  # a crash cut the last line short: start on a line of our own
                self.file.write("\n")
                self.file.flush()

    def append(self, record: Record) -> Record:
        """Write ``record`` as one line, stamped with the time, and flush it."""
        self.open()
        record = replace(record, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.file.write(record.to_json() + "\n")
        self.file.flush()
        return record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
