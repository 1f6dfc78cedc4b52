"""Helpers shared by the converters."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ...utils import natural_key
from ...errors import DatasetFormatError
from ..sequence import DepthSpec, SequenceWriter, write_dataset_json


def files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    suffixes = {s.lower() for s in suffixes}
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes), key=natural_key)


def list_scenes(base: Path, marker: str, what: str, key=natural_key) -> list[str]:
    """Names of the sub-folders of ``base`` holding ``marker``, sorted; an error naming the
    expected layout when there are none."""
    scenes = sorted((p.name for p in base.iterdir() if (p / marker).is_dir()), key=key) if base.is_dir() else []
    if not scenes:
        raise DatasetFormatError(f"{base} holds no {what}")
    return scenes


def invalid_to_nan(values: np.ndarray, allow_zero: bool = False) -> np.ndarray:
    """float32 copy with NaN where a value is NaN, infinite, negative (or zero unless allowed)."""
    out = np.asarray(values, dtype=np.float32).copy()
    bad = ~np.isfinite(out) | ((out < 0) if allow_zero else (out <= 0))
    out[bad] = np.nan
    return out


def provenance(source: str, rule: str, name: str, version: str = "1") -> dict:
    return {"source": source, "rule": rule, "converter": f"flashdepth.data.convert.{name}", "converter_version": version}


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


__all__ = ["DepthSpec", "SequenceWriter", "files", "finish", "invalid_to_nan", "list_scenes", "natural_key",
           "provenance", "read_exr", "require"]
