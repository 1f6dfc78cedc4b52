"""Converters of the training sets: MVS-Synth, Spring, Dynamic Replica, TartanAir, PointOdyssey."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DatasetFormatError
from .common import DepthSpec, SourceFrame, files, invalid_to_nan, list_scenes, read_exr, require, write_dataset

SPRING_BASELINE_M = 0.065
DYNAMIC_REPLICA_EXCLUDED = "009850-3_obj_source_left"
DYNAMIC_REPLICA_VAL = ["a1e031-7_obj_source_left", "1a1407-3_obj_source_left"]
POINTODYSSEY_SEQUENCES = [
    "cnb_dlab_0215_3rd", "cnb_dlab_0215_ego1", "cnb_dlab_0225_3rd", "cnb_dlab_0225_ego1", "dancing",
    "dancingroom0_3rd", "footlab_3rd", "footlab_ego1", "footlab_ego2", "girl", "girl_egocentric",
    "human_egocentric", "human_in_scene", "human_in_scene1", "kg", "kg_ego1", "kg_ego2", "kitchen_gfloor",
    "kitchen_gfloor_ego1", "kitchen_gfloor_ego2", "scene_carb_h_tables", "scene_carb_h_tables_ego1",
    "scene_carb_h_tables_ego2", "scene_j716_3rd", "scene_j716_ego1", "scene_j716_ego2",
    "scene_recording_20210910_S05_S06_0_3rd", "scene_recording_20210910_S05_S06_0_ego2", "scene1_0129",
    "scene1_0129_ego", "seminar_h52_3rd", "seminar_h52_ego1", "seminar_h52_ego2",
]


# ------------------------------------------------------------------------------- MVS-Synth
def convert_mvs_synth(src: Path, dst: Path) -> dict:
    base = src / "GTAV_1080" if (src / "GTAV_1080").is_dir() else src
    scenes = list_scenes(base, "images", "MVS-Synth sequences (GTAV_1080/<NNNN>/images)")

    def frames(scene: str):
        for image in files(base / scene / "images", [".png"]):
            depth = read_exr(require(base / scene / "depths" / (image.stem + ".exr"), "MVS-Synth depth"))
            out = invalid_to_nan(depth)  # non-positive depth is invalid: docs/datasets.md#official-b11
            out[np.isposinf(depth)] = np.inf  # sky stays sky
            yield SourceFrame(image, out, image.name)

    val = [s for s in scenes if s in ("0118", "0119")]
    return write_dataset(
        dst, "mvs-synth", scenes, frames, spec=DepthSpec(kind="depth", unit="relative", scale=0.1, metric=False),
        source="MVS-Synth GTAV_1080 images + depths (EXR)",
        rule="raw EXR value kept; scale 0.1 reproduces the official /10; +inf (sky) kept; non-positive/NaN -> NaN",
        splits={"train": [s for s in scenes if s not in val], "val": val, "test": scenes},
        source_url="https://phuang17.github.io/DeepMVS/mvs-synth.html", license="research only (unverified)",
        citation="Huang et al., CVPR 2018")


# ---------------------------------------------------------------------------------- Spring
def read_dsp5(path: Path) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise DatasetFormatError(f"reading {path} needs h5py: pip install 'flashdepth[train]'") from None
    with h5py.File(path, "r") as f:
        if "disparity" not in f:
            raise DatasetFormatError(f"{path} has no 'disparity' dataset")
        return np.asarray(f["disparity"], dtype=np.float32)


def spring_frame(folder: Path, image: Path, intrinsics: np.ndarray) -> SourceFrame:
    """One Spring frame: inverse depth (1/m) from the left disparity, at the RGB's resolution."""
    number = int(image.stem.split("_")[-1])  # frame numbers start at 1
    disp = read_dsp5(require(folder / "disp1_left" / f"disp1_left_{number:04d}.dsp5", "Spring disparity"))
    disp = disp[::2, ::2]  # disparity is stored at twice the RGB's resolution
    fx = float(intrinsics[number - 1, 0])
    inv = (disp / (fx * SPRING_BASELINE_M)).astype(np.float32)
    inv[~np.isfinite(inv)] = np.nan
    return SourceFrame(image, inv, image.name, intrinsics=tuple(float(v) for v in intrinsics[number - 1, :4]))


def convert_spring(src: Path, dst: Path) -> dict:
    base = src / "train" if (src / "train").is_dir() else src
    scenes = list_scenes(base, "frame_left", "Spring scenes (train/<SSSS>/frame_left)")

    def frames(scene: str):
        folder = base / scene
        # read before the scene's folder is created, so a missing file fails before anything is written for it
        intrinsics = np.loadtxt(require(folder / "cam_data" / "intrinsics.txt", "Spring cam_data/intrinsics.txt"),
                                ndmin=2)
        return (spring_frame(folder, image, intrinsics) for image in files(folder / "frame_left", [".png"]))

    return write_dataset(
        dst, "spring", scenes, frames, spec=DepthSpec(kind="inverse_depth", unit="1/m", scale=1.0, metric=True),
        source="Spring train split, frame_left + disp1_left + cam_data",
        rule="inverse depth = disparity[::2, ::2] / (fx * 0.065); NaN/inf -> NaN; 0 -> sky",
        splits={"train": scenes, "val": scenes[2::3], "test": scenes},
        source_url="https://spring-benchmark.org", license="CC BY 4.0", citation="Mehl et al., CVPR 2023")


# ------------------------------------------------------------------------- Dynamic Replica
def read_float16_png(path: Path) -> np.ndarray:
    """A 16-bit PNG whose words are the bit patterns of float16 depths."""
    from PIL import Image

    with Image.open(path) as im:
        words = np.array(im, dtype=np.uint16)
    return words.view(np.float16).astype(np.float32)


def convert_dynamic_replica(src: Path, dst: Path) -> dict:
    base = src / "train" if (src / "train").is_dir() else src
    scenes = sorted(p.name for p in base.iterdir() if "_left" in p.name and (p / "images").is_dir())
    if not scenes:
        raise DatasetFormatError(f"{src} holds no Dynamic Replica left-camera sequences (train/<seq>_left/images)")

    def frames(scene: str):
        for image in files(base / scene / "images", [".png"]):
            number = image.stem.split("-")[-1]
            depth = read_float16_png(require(base / scene / "depths" / f"{scene}_{number}.geometric.png", "depth"))
            yield SourceFrame(image, invalid_to_nan(depth), image.name)

    train = [s for s in scenes if s != DYNAMIC_REPLICA_EXCLUDED]
    return write_dataset(
        dst, "dynamicreplica", scenes, frames, spec=DepthSpec(kind="depth", unit="m", scale=1.0, metric=True),
        source="Dynamic Replica train, left camera",
        rule="float16 bit patterns in 16-bit PNG -> depth (m); 0/<0/NaN/inf -> NaN",
        splits={"train": train, "val": [s for s in DYNAMIC_REPLICA_VAL if s in scenes], "test": scenes},
        source_url="https://dynamic-stereo.github.io", license="CC BY-NC (see the project)",
        citation="Karaev et al., CVPR 2023")


# ------------------------------------------------------------------------------- TartanAir
def convert_tartanair(src: Path, dst: Path) -> dict:
    sequences = sorted(str(p.parent.relative_to(src)) for p in src.glob("*/*/*/image_left")
                       if "amusement" not in p.relative_to(src).parts[0])
    if not sequences:
        raise DatasetFormatError(f"{src} holds no TartanAir trajectories (<env>/<Easy|Hard>/<Pxxx>/image_left)")

    def frames(seq: str):
        for image in files(src / seq / "image_left", [".png"]):
            number = image.stem.split("_")[0]
            depth = np.load(require(src / seq / "depth_left" / f"{number}_left_depth.npy", "TartanAir depth"))
            out = invalid_to_nan(depth)
            out[np.isfinite(out) & (out > 1000.0)] = np.inf
            yield SourceFrame(image, out, image.name)

    return write_dataset(
        dst, "tartanair", sequences, frames, spec=DepthSpec(kind="depth", unit="m", scale=1.0, metric=True),
        source="TartanAir v1, left camera", rule="depth (m); inf/NaN/0/<0 -> NaN; depth > 1000 m -> +inf (sky)",
        splits={"train": sequences, "val": [], "test": []},
        source_url="https://theairlab.org/tartanair-dataset", license="CC BY 4.0", citation="Wang et al., IROS 2020")


# ---------------------------------------------------------------------------- PointOdyssey
def convert_pointodyssey(src: Path, dst: Path) -> dict:
    from PIL import Image

    base = src / "train" if (src / "train").is_dir() else src
    present = {p.name for p in base.iterdir() if (p / "rgbs").is_dir()}
    sequences = [s for s in POINTODYSSEY_SEQUENCES if s in present]
    if not sequences:
        raise DatasetFormatError(f"{src} holds none of the 33 PointOdyssey training sequences (train/<seq>/rgbs)")

    def frames(seq: str):
        for image in files(base / seq / "rgbs", [".jpg", ".png"]):
            number = image.stem.split("_")[-1]
            with Image.open(require(base / seq / "depths" / f"depth_{number}.png", "PointOdyssey depth")) as im:
                code = np.array(im, dtype=np.uint16)
            depth = code.astype(np.float32) / 65535.0 * 1000.0
            depth[code == 0] = np.nan
            yield SourceFrame(image, depth, image.name)

    return write_dataset(
        dst, "pointodyssey", sequences, frames,
        spec=DepthSpec(kind="depth", unit="m", scale=1.0, metric=True, clamp_min_depth=0.01),
        source="PointOdyssey train (the 33-sequence selection)",
        rule="depth = code / 65535 * 1000 m; code 0 -> NaN; clamp_min_depth 0.01 m",
        splits={"train": sequences, "val": [], "test": []},
        source_url="https://pointodyssey.com", license="CC BY-NC-SA 4.0", citation="Zheng et al., ICCV 2023")
