"""The one table of datasets: how each is converted, used, sampled and evaluated.

Adding a dataset is a row here plus its converter (a function ``(source, data_root) -> report``
in :mod:`flashdepth.data.convert`). The command line (``flashdepth convert``), training (clip
strides) and evaluation (presets) read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..errors import DatasetFormatError, lookup
from .convert import testsets, trainsets


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    convert: Callable[[Path, Path], dict]  # (native source folder, data root) -> report
    used_for: str  # "train", "test" or "train, test"
    clip_stride: int = 1  # published frame stride of training clips
    #: evaluation size (H, W) per preset ("base", "2k"); empty: evaluated at native resolution
    eval_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)


DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec("mvs-synth", "MVS-Synth (GTA V), 120 sequences", trainsets.convert_mvs_synth, "train", 1),
    DatasetSpec("spring", "Spring (Blender movie), stereo disparity", trainsets.convert_spring, "train", 2),
    DatasetSpec("dynamicreplica", "Dynamic Replica, left camera", trainsets.convert_dynamic_replica, "train", 2),
    DatasetSpec("tartanair", "TartanAir v1, left camera", trainsets.convert_tartanair, "train", 2),
    DatasetSpec("pointodyssey", "PointOdyssey, the 33-sequence selection", trainsets.convert_pointodyssey,
                "train", 2),
    DatasetSpec("sintel", "MPI Sintel (final pass)", testsets.convert_sintel, "test", 1,
                {"base": (434, 1022), "2k": (434, 1022)}),
    DatasetSpec("eth3d", "ETH3D high-res multi-view", testsets.convert_eth3d, "test", 1,
                {"base": (518, 784), "2k": (1274, 1918)}),
    DatasetSpec("waymo", "Waymo Open validation, front camera, LiDAR", testsets.convert_waymo, "test", 1,
                {"base": (518, 784), "2k": (1274, 1918)}),
    DatasetSpec("unreal4k", "UnrealStereo4K, left view", testsets.convert_unreal4k, "test", 2,
                {"base": (518, 924), "2k": (1148, 2044)}),
    DatasetSpec("urbansyn", "UrbanSyn (image collection)", testsets.convert_urbansyn, "test", 1,
                {"base": (518, 1036), "2k": (1022, 2044)}),
)}


def get_dataset(name: str) -> DatasetSpec:
    return lookup(DATASETS, name, "dataset")


def convert(name: str, src: str | Path, dst: str | Path) -> dict:
    """Convert dataset ``name`` from its native layout in ``src`` to ``dst/<name>/``."""
    spec = get_dataset(name)
    src = Path(src)
    if not src.is_dir():
        raise DatasetFormatError(f"source folder {src} does not exist")
    return spec.convert(src, Path(dst))
