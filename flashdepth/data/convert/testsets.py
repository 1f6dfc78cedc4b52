"""Converters of the evaluation sets: Sintel, ETH3D, Waymo, UnrealStereo4K, UrbanSyn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DatasetFormatError
from .common import (DepthSpec, SourceFrame, files, invalid_to_nan, list_scenes, natural_key, read_exr, require,
                     write_dataset)

# The 30 Waymo validation segments of the official test split.
WAYMO_TEST = [
    "segment-12831741023324393102_2673_230_2693_230", "segment-10837554759555844344_6525_000_6545_000",
    "segment-11450298750351730790_1431_750_1451_750", "segment-11434627589960744626_4829_660_4849_660",
    "segment-14127943473592757944_2068_000_2088_000", "segment-12940710315541930162_2660_000_2680_000",
    "segment-12306251798468767010_560_000_580_000", "segment-11616035176233595745_3548_820_3568_820",
    "segment-14165166478774180053_1786_000_1806_000", "segment-1071392229495085036_1844_790_1864_790",
    "segment-12374656037744638388_1412_711_1432_711", "segment-13469905891836363794_4429_660_4449_660",
    "segment-1405149198253600237_160_000_180_000", "segment-10289507859301986274_4200_000_4220_000",
    "segment-12102100359426069856_3931_470_3951_470", "segment-14081240615915270380_4399_000_4419_000",
    "segment-11048712972908676520_545_000_565_000", "segment-13573359675885893802_1985_970_2005_970",
    "segment-10689101165701914459_2072_300_2092_300", "segment-12496433400137459534_120_000_140_000",
    "segment-11356601648124485814_409_000_429_000", "segment-11406166561185637285_1753_750_1773_750",
    "segment-10868756386479184868_3000_000_3020_000", "segment-1024360143612057520_3580_000_3600_000",
    "segment-13299463771883949918_4240_000_4260_000", "segment-12820461091157089924_5202_916_5222_916",
    "segment-10203656353524179475_7625_000_7645_000", "segment-13178092897340078601_5118_604_5138_604",
    "segment-12134738431513647889_3118_000_3138_000", "segment-13356997604177841771_3360_000_3380_000",
]


# ---------------------------------------------------------------------------------- Sintel
def read_dpt(path: Path) -> np.ndarray:
    """Sintel .dpt: float32 tag 202021.25, int32 width, int32 height, then row-major float32 depth."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, np.float32, 1)
        if tag.size != 1 or abs(float(tag[0]) - 202021.25) > 1e-3:
            raise DatasetFormatError(f"{path} is not a Sintel .dpt file (bad tag)")
        w, h = (int(v) for v in np.fromfile(f, np.int32, 2))
        data = np.fromfile(f, np.float32, w * h)
    if data.size != w * h:
        raise DatasetFormatError(f"{path} is truncated")
    return data.reshape(h, w)


def sintel_depth(raw: np.ndarray) -> np.ndarray:
    """Official order of rules: inf/NaN/<1e-5 invalid (NaN) first, then finite > 1e4 is sky (+inf)."""
    out = raw.astype(np.float32).copy()
    invalid = ~np.isfinite(raw) | (raw < 1e-5)
    out[raw > 1e4] = np.inf
    out[invalid] = np.nan
    return out


def convert_sintel(src: Path, dst: Path) -> dict:
    images = require(src / "images" / "training" / "clean", "Sintel clean images (images/training/clean)")
    depths = require(src / "depth" / "training" / "depth", "Sintel depth (depth/training/depth)")
    scenes = sorted(p.name for p in images.iterdir() if p.is_dir())

    def frames(scene: str):
        for frame in files(images / scene, [".png"]):
            depth = sintel_depth(read_dpt(require(depths / scene / (frame.stem + ".dpt"), "Sintel depth")))
            yield SourceFrame(frame, depth, frame.name)

    return write_dataset(
        dst, "sintel", scenes, frames, spec=DepthSpec(kind="depth", unit="relative", scale=1.0, metric=False),
        source="MPI Sintel training, clean pass + depth",
        rule="depth as stored; inf/NaN/<1e-5 -> NaN; finite >1e4 -> +inf",
        splits={"train": scenes, "val": scenes[:8], "test": scenes},
        source_url="http://sintel.is.tue.mpg.de", license="research use (see the Sintel site)",
        citation="Butler et al., ECCV 2012")


# ----------------------------------------------------------------------------------- ETH3D
def convert_eth3d(src: Path, dst: Path) -> dict:
    from PIL import Image

    scenes = list_scenes(src, "images/dslr_images", "ETH3D scenes (<scene>/images/dslr_images)", key=str)

    def frames(scene: str):
        for image in files(src / scene / "images" / "dslr_images", [".jpg"]):
            with Image.open(image) as im:
                width, height = im.size  # header only, not the 24 MP image: docs/datasets.md#official-b13
            raw = np.fromfile(require(src / scene / "ground_truth_depth" / "dslr_images" / image.name, "ETH3D depth"),
                              dtype=np.float32)
            if raw.size != width * height:
                raise DatasetFormatError(f"ETH3D depth for {image.name} has {raw.size} values, "
                                         f"expected {width}x{height}")
            # non-positive depth is invalid: docs/datasets.md#official-b11
            yield SourceFrame(image, invalid_to_nan(raw.reshape(height, width)), image.name)

    return write_dataset(
        dst, "eth3d", scenes, frames, spec=DepthSpec(kind="depth", unit="m", scale=1.0, metric=True), video=False,
        source="ETH3D high-res multi-view training, distorted DSLR JPEGs + ground_truth_depth",
        rule="raw float32 depth (m), size from the JPEG header; inf/<=0/NaN -> NaN",
        splits={"train": [], "val": scenes[:8], "test": scenes},
        source_url="https://www.eth3d.net", license="CC BY-NC-SA 4.0 (see the ETH3D site)",
        citation="Schops et al., CVPR 2017")


# ----------------------------------------------------------------------------------- Waymo
def waymo_depth(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sparse (x=col, y=row, depth) points -> dense map, NaN where nothing was measured.

    Coordinates are truncated as in the official reader; where several points hit a pixel the
    nearest is kept (the official reader keeps an arbitrary one: docs/datasets.md#official-waymo).
    """
    out = np.full((height, width), np.inf, dtype=np.float64)
    if points.size:
        x = points[:, 0].astype(np.int64)
        y = points[:, 1].astype(np.int64)
        d = points[:, 2].astype(np.float64)
        keep = (x >= 0) & (x < width) & (y >= 0) & (y < height) & (d > 0) & np.isfinite(d)
        np.minimum.at(out, (y[keep], x[keep]), d[keep])
    out[np.isinf(out)] = np.nan
    return out.astype(np.float32)


def convert_waymo(src: Path, dst: Path) -> dict:
    from PIL import Image

    base = src / "val" if (src / "val").is_dir() else src
    segments = list_scenes(base, "FRONT/rgb/original", "Waymo segments (<segment>/FRONT/rgb/original)", key=str)

    def frames(seg: str):
        for image in files(base / seg / "FRONT" / "rgb" / "original", [".jpg"]):
            with Image.open(image) as im:
                width, height = im.size
            points = np.load(require(base / seg / "FRONT" / "depth" / (image.stem + ".npy"), "Waymo depth points"))
            yield SourceFrame(image, waymo_depth(np.asarray(points).reshape(-1, 3), height, width), image.name)

    return write_dataset(
        dst, "waymo", segments, frames, spec=DepthSpec(kind="depth", unit="m", scale=1.0, metric=True, sparse=True),
        fps=10.0, source="Waymo Open validation, front camera, LiDAR points projected (x, y, depth) per frame",
        rule="x, y truncated to int; points outside the image dropped; nearest point kept per pixel; no point -> NaN; "
             "the export's depth is stored as given (camera z expected)",
        splits={"train": [], "val": segments[:8], "test": [s for s in WAYMO_TEST if s in segments]},
        source_url="https://waymo.com/open", license="Waymo Dataset License Agreement for Non-Commercial Use",
        citation="Sun et al., CVPR 2020")


# -------------------------------------------------------------------------- UnrealStereo4K
def convert_unreal4k(src: Path, dst: Path) -> dict:
    scenes = list_scenes(src, "Image0", "UnrealStereo4K scenes (<scene>/Image0)")

    def frames(scene: str):
        for image in files(src / scene / "Image0", [".png"]):
            disp = np.load(require(src / scene / "Disp0" / (image.stem + ".npy"), "UnrealStereo4K disparity"))
            yield SourceFrame(image, invalid_to_nan(disp, allow_zero=True), image.name)

    return write_dataset(
        dst, "unreal4k", scenes, frames, spec=DepthSpec(kind="inverse_depth", unit="relative", scale=1.0, metric=False),
        source="UnrealStereo4K left view (Image0, Disp0)",
        rule="pixel disparity used as relative inverse depth; NaN/inf/<0 -> NaN; 0 stays 0 (sky)",
        splits={"train": [], "val": [], "test": scenes},
        source_url="https://github.com/fabiotosi92/SMD-Nets", license="unknown (see the authors' release)",
        citation="Tosi et al., CVPR 2021")


# -------------------------------------------------------------------------------- UrbanSyn
def convert_urbansyn(src: Path, dst: Path, per_sequence: int = 1000) -> dict:
    """Flat release (rgb/, depth/, ss/) -> sequences of up to 1000 images; sequence 0 is the test set.

    A release already split into numbered folders (<k>/rgb, ...) keeps its folders.
    """
    if (src / "rgb").is_dir():
        groups = {}
        images = files(src / "rgb", [".png"])
        for k in range(0, len(images), per_sequence):
            groups[str(k // per_sequence)] = (src, images[k:k + per_sequence])
    else:
        groups = {p.name: (p, files(p / "rgb", [".png"])[:per_sequence])
                  for p in sorted((p for p in src.iterdir() if (p / "rgb").is_dir()), key=natural_key)}
    if not groups:
        raise DatasetFormatError(f"{src} holds no UrbanSyn images (rgb/rgb_NNNN.png)")

    def frames(name: str):
        from PIL import Image

        folder, images = groups[name]
        for image in images:
            number = image.stem.split("_")[-1]
            depth = invalid_to_nan(read_exr(require(folder / "depth" / f"depth_{number}.exr", "UrbanSyn depth")))
            with Image.open(require(folder / "ss" / f"ss_{number}.png", "UrbanSyn labels")) as im:
                labels = np.asarray(im)
            labels = labels if labels.ndim == 2 else labels[..., 0]  # the label plane: docs/datasets.md#official-b13
            depth[labels == 10] = np.inf
            yield SourceFrame(image, depth, image.name)

    names = list(groups)
    return write_dataset(
        dst, "urbansyn", names, frames, spec=DepthSpec(kind="depth", unit="m", scale=1e5, metric=True), video=False,
        source="UrbanSyn rgb + depth (EXR, channel Y) + ss labels",
        rule="metres = value * 1e5 (scale); ss label 10 (sky) -> +inf; <=0/NaN -> NaN",
        splits={"train": [], "val": [], "test": names[:1], "all": names},
        source_url="https://www.urbansyn.org", license="CC BY-SA 4.0", citation="Gomez et al., 2023")
