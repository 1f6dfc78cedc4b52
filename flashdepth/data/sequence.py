"""The "flashdepth sequence folder" format (v1) -- one reader, one writer.

::

    <root>/<dataset>/dataset.json           name, licence, splits (sequence ids)
    <root>/<dataset>/<sequence_id>/         the id may contain '/'
        sequence.json                       metadata; unknown keys are errors
        rgb/000000.png|jpg                  frames, contiguous from 0, in time order
        depth/000000.npy                    (H, W) float32/float16 ground truth (optional)
        mask/000000.png                     optional: 0 invalid, 1 valid, 2 sky
        intrinsics.txt                      optional: fx fy cx cy per frame
        poses.txt                           optional (our extension): 16 numbers per frame,
                                            camera-to-world 4x4, row-major, metres

The reader returns what every loader needs (:meth:`SequenceFolder.target`): inverse depth in
1/m (or relative units) with -1 for invalid and 0 for sky, whatever the stored kind was.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import DatasetFormatError

SEQUENCE_FORMAT = "flashdepth-sequence"
DATASET_FORMAT = "flashdepth-dataset"
DEPTH_KINDS = ("depth", "inverse_depth")
UNITS = ("m", "1/m", "relative")

_SEQUENCE_KEYS = {"format", "version", "dataset", "sequence", "num_frames", "width", "height", "rgb_ext", "fps",
                  "video", "depth", "mask", "intrinsics", "poses", "source_frames", "provenance"}
_DEPTH_KEYS = {"kind", "dtype", "unit", "scale", "metric", "sparse", "clamp_min_depth"}
_DATASET_KEYS = {"format", "version", "name", "source_url", "license", "citation", "splits"}


@dataclass(frozen=True)
class DepthSpec:
    kind: str = "inverse_depth"
    dtype: str = "float32"
    unit: str = "1/m"
    scale: float = 1.0
    metric: bool = True
    sparse: bool = False
    clamp_min_depth: Optional[float] = None

    def to_dict(self) -> dict:
        return dict(kind=self.kind, dtype=self.dtype, unit=self.unit, scale=self.scale, metric=self.metric,
                    sparse=self.sparse, clamp_min_depth=self.clamp_min_depth)


def _require(data: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if data.get(k) is None]
    if missing:
        raise DatasetFormatError(f"{where}: missing required key(s) {', '.join(missing)}")


def _check_keys(data: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DatasetFormatError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")


def _read_meta(folder: Path, name: str, what: str, keys: set, fmt: str, hint: str = "") -> dict:
    """``folder/name`` (a sequence's or a dataset's JSON): present, valid JSON, known keys only,
    of format ``fmt`` version 1; otherwise a DatasetFormatError saying which of these failed."""
    meta_path = folder / name
    if not meta_path.is_file():
        raise DatasetFormatError(f"{folder} is not a {what} folder (no {name}){hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{meta_path} is not valid JSON ({e})") from None
    _check_keys(meta, keys, str(meta_path))
    if meta.get("format") != fmt or meta.get("version") != 1:
        raise DatasetFormatError(f"{meta_path}: expected format {fmt!r} version 1")
    return meta


def to_inverse_depth(stored: np.ndarray, spec: DepthSpec, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Stored ground truth -> inverse depth with -1 invalid and 0 sky (the loader contract)."""
    v = stored.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.kind == "depth":
            depth = v * spec.scale
            invalid = np.isnan(depth) | (depth <= 0) | np.isneginf(depth)
            sky = np.isposinf(depth)
            if spec.clamp_min_depth is not None:
                depth = np.where(invalid | sky, depth, np.maximum(depth, spec.clamp_min_depth))
            out = np.where(sky, 0.0, 1.0 / depth)
        else:
            out = v * spec.scale
            invalid = np.isnan(out) | (out < 0) | np.isinf(out)
            sky = out == 0
    if mask is not None:
        invalid = invalid | (mask == 0)
        sky = sky | (mask == 2)
        out = np.where(mask == 2, 0.0, out)
    return np.where(invalid, -1.0, out).astype(np.float32)


class SequenceFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "sequence.json"
        meta = _read_meta(self.path, "sequence.json", "sequence", _SEQUENCE_KEYS, SEQUENCE_FORMAT)
        self.meta = meta
        self.depth_spec = None
        if meta.get("depth"):
            _check_keys(meta["depth"], _DEPTH_KEYS, f"{meta_path} depth")
            self.depth_spec = DepthSpec(**meta["depth"])
            if self.depth_spec.kind not in DEPTH_KINDS or self.depth_spec.unit not in UNITS:
                raise DatasetFormatError(f"{meta_path}: depth kind must be one of {DEPTH_KINDS}, unit one of {UNITS}")
        _require(meta, ("num_frames", "width", "height"), str(meta_path))
        self.num_frames = int(meta["num_frames"])
        self.width, self.height = int(meta["width"]), int(meta["height"])
        self.rgb_ext = meta.get("rgb_ext", "png")

    @property
    def name(self) -> str:
        return self.meta.get("sequence", self.path.name)

    @property
    def dataset(self) -> str:
        return self.meta.get("dataset", self.path.parent.name)

    @property
    def has_depth(self) -> bool:
        return self.depth_spec is not None

    def __len__(self) -> int:
        return self.num_frames

    def rgb_path(self, i: int) -> Path:
        return self.path / "rgb" / f"{i:06d}.{self.rgb_ext}"

    def rgb(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.rgb_path(i)) as im:
            return np.asarray(im.convert("RGB"))

    def target(self, i: int) -> np.ndarray:
        """Inverse depth (H, W) float32: -1 invalid, 0 sky."""
        if self.depth_spec is None:
            raise DatasetFormatError(f"{self.path} has no ground truth")
        stored = np.load(self.path / "depth" / f"{i:06d}.npy")
        if stored.shape != (self.height, self.width):
            raise DatasetFormatError(f"{self.path}/depth/{i:06d}.npy is {stored.shape}, expected {(self.height, self.width)}")
        mask = None
        if self.meta.get("mask"):
            from PIL import Image

            with Image.open(self.path / "mask" / f"{i:06d}.png") as im:
                mask = np.asarray(im)
        return to_inverse_depth(stored, self.depth_spec, mask)

    def intrinsics(self) -> Optional[np.ndarray]:
        path = self.path / "intrinsics.txt"
        return np.loadtxt(path, ndmin=2) if path.is_file() else None

    def poses(self) -> Optional[np.ndarray]:
        path = self.path / "poses.txt"
        return np.loadtxt(path, ndmin=2).reshape(-1, 4, 4) if path.is_file() else None

    def validate(self) -> dict:
        """The checks of the format spec; returns counts and invalid/sky fractions."""
        rgb = sorted((self.path / "rgb").iterdir())
        if len(rgb) != self.num_frames:
            raise DatasetFormatError(f"{self.path}: {len(rgb)} RGB files, sequence.json says {self.num_frames}")
        stats = {"frames": self.num_frames, "invalid": 0.0, "sky": 0.0}
        if self.has_depth:
            n = len(list((self.path / "depth").iterdir()))
            if n != self.num_frames:
                raise DatasetFormatError(f"{self.path}: {n} depth files, expected {self.num_frames}")
            for i in range(self.num_frames):
                t = self.target(i)
                stats["invalid"] += float((t < 0).mean()) / self.num_frames
                stats["sky"] += float((t == 0).mean()) / self.num_frames
        return stats


class DatasetFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "dataset.json"
        meta = _read_meta(self.path, "dataset.json", "dataset", _DATASET_KEYS, DATASET_FORMAT,
                          "; convert the data with `flashdepth convert` first")
        _require(meta, ("name",), str(meta_path))
        self.meta = meta
        self.name = meta["name"]

    def split(self, name: str) -> list[str]:
        splits = self.meta.get("splits", {})
        if name not in splits:
            raise DatasetFormatError(f"{self.path}: no split {name!r}; it has {', '.join(splits) or 'none'}")
        return list(splits[name])

    def sequences(self, split: str) -> list[SequenceFolder]:
        return [SequenceFolder(self.path / s) for s in self.split(split)]


class SequenceWriter:
    """Writes one sequence folder frame by frame (converters use it)."""

    def __init__(self, root: Path, dataset: str, sequence: str, depth: Optional[DepthSpec], video: bool = True,
                 fps: Optional[float] = None, provenance: Optional[dict] = None):
        self.path = Path(root) / sequence
        if self.path.exists():
            shutil.rmtree(self.path)
        (self.path / "rgb").mkdir(parents=True)
        if depth is not None:
            (self.path / "depth").mkdir()
        self.meta: dict[str, Any] = {
            "format": SEQUENCE_FORMAT, "version": 1, "dataset": dataset, "sequence": sequence, "num_frames": 0,
            "width": None, "height": None, "rgb_ext": None, "fps": fps, "video": video,
            "depth": depth.to_dict() if depth else None, "mask": False, "intrinsics": False,
            "source_frames": [], "provenance": provenance or {},
        }
        self.depth = depth
        self.intrinsics: list = []
        self.poses: list = []

    def add(self, rgb_source: Path | np.ndarray, depth: Optional[np.ndarray] = None, source_name: str = "",
            intrinsics: Optional[tuple] = None, pose: Optional[np.ndarray] = None) -> None:
        from PIL import Image

        i = self.meta["num_frames"]
        if isinstance(rgb_source, Path) and rgb_source.suffix.lower() in (".png", ".jpg", ".jpeg"):
            with Image.open(rgb_source) as im:
                size, mode = im.size, im.mode
            ext = "jpg" if rgb_source.suffix.lower() in (".jpg", ".jpeg") else "png"
            if mode == "RGB":  # already 8-bit RGB: copied unchanged, never re-encoded
                shutil.copyfile(rgb_source, self.path / "rgb" / f"{i:06d}.{ext}")
            else:
                with Image.open(rgb_source) as im:
                    ext = "png"
                    im.convert("RGB").save(self.path / "rgb" / f"{i:06d}.png")
        else:
            array = np.asarray(Image.open(rgb_source).convert("RGB")) if isinstance(rgb_source, Path) else rgb_source
            ext, size = "png", (array.shape[1], array.shape[0])
            Image.fromarray(array).save(self.path / "rgb" / f"{i:06d}.png")
        if self.meta["rgb_ext"] not in (None, ext):
            raise DatasetFormatError(f"{self.path}: mixed RGB formats ({self.meta['rgb_ext']} and {ext})")
        self.meta["rgb_ext"] = ext
        if self.meta["width"] is None:
            self.meta["width"], self.meta["height"] = size
        elif (self.meta["width"], self.meta["height"]) != tuple(size):
            raise DatasetFormatError(f"{self.path}: frame {i} is {size[0]}x{size[1]}, earlier frames "
                                     f"{self.meta['width']}x{self.meta['height']}")
        if self.depth is not None:
            if depth is None:
                raise DatasetFormatError(f"{self.path}: frame {i} has no ground truth")
            if depth.shape != (self.meta["height"], self.meta["width"]):
                raise DatasetFormatError(f"{self.path}: depth of frame {i} is {depth.shape}, RGB is "
                                         f"{self.meta['height']}x{self.meta['width']}")
            np.save(self.path / "depth" / f"{i:06d}.npy", depth.astype(self.depth.dtype))
        if intrinsics is not None:
            self.intrinsics.append(intrinsics)
        if pose is not None:
            self.poses.append(np.asarray(pose, dtype=np.float64).reshape(16))
        self.meta["source_frames"].append(source_name)
        self.meta["num_frames"] = i + 1

    def close(self) -> SequenceFolder:
        if self.intrinsics:
            np.savetxt(self.path / "intrinsics.txt", np.asarray(self.intrinsics, dtype=np.float64), fmt="%.6f")
            self.meta["intrinsics"] = True
        if self.poses:
            np.savetxt(self.path / "poses.txt", np.asarray(self.poses), fmt="%.9g")
            self.meta["poses"] = True
        (self.path / "sequence.json").write_text(json.dumps(self.meta, indent=1))
        return SequenceFolder(self.path)


def write_dataset_json(root: Path, name: str, splits: dict, source_url: str = "", license: str = "",
                       citation: str = "") -> None:
    root.mkdir(parents=True, exist_ok=True)
    meta = {"format": DATASET_FORMAT, "version": 1, "name": name, "source_url": source_url, "license": license,
            "citation": citation, "splits": splits}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
