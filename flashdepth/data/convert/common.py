"""Helpers shared by the converters, and :func:`write_dataset`, the skeleton every converter runs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Optional, Sequence, Union

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


class SourceFrame(NamedTuple):
    """One decoded frame of a native dataset, as a converter's frame iterator yields it."""

    rgb: Union[Path, np.ndarray]  # an image file (8-bit RGB files are copied unchanged) or (H, W, 3) uint8
    depth: Optional[np.ndarray]  # (H, W) ground truth as the DepthSpec says (sky and invalid: docs/datasets.md)
    name: str  # the native file name, recorded in sequence.json's source_frames
    intrinsics: Optional[tuple] = None  # (fx, fy, cx, cy)
    pose: Optional[np.ndarray] = None  # (4, 4) camera-to-world, metres


def write_dataset(dst: Path, name: str, scenes: Sequence[str], frames: Callable[[str], Iterable[SourceFrame]], *,
                  spec: DepthSpec, source: str, rule: str, splits: dict, video: bool = True,
                  fps: Optional[float] = None, source_url: str = "", license: str = "", citation: str = "",
                  scene_provenance: Optional[Callable[[str], dict]] = None) -> dict:
    """Write ``dst/<name>/``: one sequence folder per scene, then ``dataset.json``; return the report.

    ``frames(scene)`` is the dataset's own rule for decoding a scene; it is called before the
    scene's folder is created, so a function that reads per-scene files eagerly (and returns the
    iterator) fails before anything is written for that scene. ``source`` and ``rule`` are the
    provenance text recorded in every ``sequence.json``; ``scene_provenance(scene)`` adds
    per-scene entries (e.g. the seed of a generated clip).
    """
    root = dst / name
    writers = []
    for scene in scenes:
        scene_frames = frames(scene)
        provenance = _provenance(source, rule, name)
        if scene_provenance is not None:
            provenance.update(scene_provenance(scene))
        writer = SequenceWriter(root, name, scene, spec, video=video, fps=fps, provenance=provenance)
        for frame in scene_frames:
            writer.add(frame.rgb, frame.depth, source_name=frame.name, intrinsics=frame.intrinsics, pose=frame.pose)
        writers.append(writer)
    return _finish(root, name, writers, splits, source_url=source_url, license=license, citation=citation)


def _provenance(source: str, rule: str, name: str, version: str = "1") -> dict:
    return {"source": source, "rule": rule, "converter": f"flashdepth.data.convert.{name}",
            "converter_version": version}


def _finish(root: Path, name: str, writers: list[SequenceWriter], splits: dict, **info) -> dict:
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


__all__ = ["DepthSpec", "SourceFrame", "files", "invalid_to_nan", "list_scenes", "natural_key", "read_exr",
           "require", "write_dataset"]
