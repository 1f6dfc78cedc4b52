"""The output root on disk: partial folders, publication by rename, the done marker, the lock.

An input is written into ``OUTROOT/.partial/<name>.<pid>.<random>/`` and renamed to
``OUTROOT/<name>/`` only once complete, with the marker written last inside it: a folder at
``OUTROOT/<name>/`` is never half-written, and one without a marker is not ours.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import OutputError
from ..io.sinks import OUTPUTS

PARTIAL = ".partial"
MARKER = ".flashdepth-done.json"
LOCK = ".lock"


def partial_folder(outroot: Path, name: str) -> Path:
    """A fresh folder for one attempt at ``name``; the worker's pid is in its name."""
    return Path(outroot) / PARTIAL / f"{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


#: a file in a partial folder naming the worker that writes it (host:pid), removed before publication
WORKER_FILE = ".flashdepth-worker"


def start_partial(outroot: Path, name: str, worker: str) -> Path:
    """Create the folder of one attempt at ``name``, signed by ``worker`` (host:pid)."""
    folder = partial_folder(outroot, name)
    folder.mkdir(parents=True)
    (folder / WORKER_FILE).write_text(worker, encoding="utf-8")
    return folder


def left_attempts(outroot: Path, name: str) -> list[tuple[str, int]]:
    """(worker, frames written) of each attempt at ``name`` whose partial folder was left behind (its
    worker died), oldest first. Frames are read from ``depth.npy`` (0 without the ``raw`` output)."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.[0-9a-f]{8}")
    try:
        folders = [p for p in (Path(outroot) / PARTIAL).iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []
    attempts = []
    for folder in sorted(folders, key=lambda p: p.stat().st_mtime_ns):
        try:
            worker = (folder / WORKER_FILE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            worker = f"?:{pattern.fullmatch(folder.name).group(1)}"
        try:
            frames = int(np.load(folder / OUTPUTS["raw"].path, mmap_mode="r").shape[0])
        except (OSError, ValueError, IndexError):
            frames = 0
        attempts.append((worker, frames))
    return attempts


def remove_partials(outroot: Path) -> None:
    """Remove every unfinished attempt (only while no worker of this output root runs)."""
    shutil.rmtree(Path(outroot) / PARTIAL, ignore_errors=True)


def write_marker(folder: Path, record: dict) -> None:
    """The last file written into a finished folder: what it holds (frames, outputs, input)."""
    path = folder / MARKER
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())


def read_marker(folder: Path) -> Optional[dict]:
    try:
        with open(Path(folder) / MARKER, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def publish(partial: Path, final: Path) -> None:
    """Rename the finished ``partial`` folder to ``final``, replacing a folder already there."""
    (partial / WORKER_FILE).unlink(missing_ok=True)
    if final.exists():
        aside = partial.parent / f"{final.name}.replaced.{uuid.uuid4().hex[:8]}"
        os.rename(final, aside)
        os.rename(partial, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(partial, final)


def check_done(folder: Path, outputs: Sequence[str], frames: int) -> Optional[str]:
    """None when ``folder`` holds a finished run of ``frames`` frames with ``outputs``; else why not."""
    marker = read_marker(folder)
    if marker is None:
        return f"{folder} has no {MARKER}"
    if marker.get("frames") != frames:
        return f"{folder}/{MARKER} says {marker.get('frames')} frames, the manifest {frames}"
    missing = [name for name in outputs if name not in marker.get("outputs", ())]
    if missing:
        return f"{folder} was made without {', '.join(missing)}"
    for fmt in (OUTPUTS[name] for name in outputs):  # names checked by RunOptions
        if not (folder / fmt.path).exists():
            return f"{folder / fmt.path} is missing"
        if fmt.name == "raw":
            try:
                count = np.load(folder / fmt.path, mmap_mode="r").shape[0]
            except (OSError, ValueError) as e:
                return f"{folder / fmt.path} cannot be read ({e})"
            if count != frames:
                return f"{folder / fmt.path} holds {count} frames, not {frames}"
    return None


@contextmanager
def locked(outroot: Path) -> Iterator[None]:
    """Hold ``outroot`` for one batch at a time (two would remove each other's partial folders)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one batch per output root is on the user
        yield
        return
    path = Path(outroot) / LOCK
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OutputError(f"{outroot} is in use by another batch ({holder}); wait for it to end, "
                              "or give another output root") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
