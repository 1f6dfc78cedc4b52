"""The manifest: ``OUTROOT/manifest.jsonl``, one JSON line per input and attempt.

Append-only and flushed line by line, written by the driver alone. The final state of an input is
its last line. A line that is not a record (cut short by a crash, even inside a multi-byte
character; edited; valid JSON that is not an object) is ignored when read, and counted.
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
    def from_json(cls, line: str | bytes) -> Optional["Record"]:
        """The record of a line, or None for a line that is not one (cut short, edited, not UTF-8,
        not a JSON object, fields of the wrong type)."""
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(row, dict):
            return None
        known = {f.name: f for f in fields(cls)}
        try:
            record = cls(**{k: v for k, v in row.items() if k in known})
        except TypeError:  # a required field missing
            return None
        good = (record.status in STATUSES and isinstance(record.input, str) and isinstance(record.output, str)
                and isinstance(record.frames, int) and not isinstance(record.frames, bool)
                and isinstance(record.attempt, int))
        return record if good else None


class Manifest:
    """Appends records to ``outroot/manifest.jsonl``; reads the final state of each input."""

    def __init__(self, outroot: str | Path):
        self.path = Path(outroot) / MANIFEST
        self.file = None
        self.ignored = 0  # lines of the last final() that were not records

    def final(self) -> dict[str, Record]:
        """Input -> its last record. Lines that are not records are skipped (``ignored`` counts them)."""
        states: dict[str, Record] = {}
        self.ignored = 0
        if self.path.exists():
            with open(self.path, "rb") as f:  # bytes: a line cut inside a character must not stop the others
                for line in f:
                    if not line.strip():
                        continue
                    record = Record.from_json(line)
                    if record is None:
                        self.ignored += 1
                    else:
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
