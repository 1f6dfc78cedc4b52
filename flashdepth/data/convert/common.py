"""Helpers shared by the converters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..sequence import DatasetFormatError, DepthSpec, SequenceWriter, write_dataset_json


def numeric_key(path: Path | str) -> tuple:
    """Sort by the numbers in a file name (so frame_10 follows frame_9)."""
    name = Path(path).name
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    suffixes = {s.lower() for s in suffixes}
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes), key=numeric_key)


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetFormatError(f"missing {what}: {path}")
    return path


def read_exr(path: Path, channel: Optional[str] = None) -> np.ndarray:
    try:
        import OpenEXR
    except ImportError:
        raise DatasetFormatError(f"reading {path} needs OpenEXR: pip install 'flashdepth[exr]'") from None
    with OpenEXR.File(str(path)) as f:
        channels = f.channels()
        if channel is None:
            channel = "Y" if "Y" in channels else sorted(channels)[0]
        if channel not in channels:
            raise DatasetFormatError(f"{path} has no channel {channel!r} (it has {', '.join(channels)})")
        data = np.asarray(channels[channel].pixels, dtype=np.float32)
    return data if data.ndim == 2 else data[..., 0]


def finish(root: Path, name: str, writers: list[SequenceWriter], splits: dict, **info) -> dict:
    sequences = [w.close() for w in writers]
    write_dataset_json(root, name, splits, **info)
    report = {"dataset": name, "sequences": len(sequences), "frames": sum(len(s) for s in sequences)}
    invalid = sky = 0.0
    for seq in sequences:
        stats = seq.validate()
        invalid += stats["invalid"] * len(seq)
        sky += stats["sky"] * len(seq)
    if report["frames"]:
        report["invalid_fraction"] = invalid / report["frames"]
        report["sky_fraction"] = sky / report["frames"]
    return report


__all__ = ["DepthSpec", "SequenceWriter", "files", "finish", "numeric_key", "read_exr", "require"]
