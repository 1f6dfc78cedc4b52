"""Sequence folders and the converters of the evaluation sets, on tiny samples in native formats."""

import json

import numpy as np
import pytest
from PIL import Image

from flashdepth.data import DatasetFolder, SequenceFolder
from flashdepth.data.convert import convert
from flashdepth.data.sequence import DatasetFormatError

H, W = 20, 30


def rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def write_dpt(path, depth):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.array([202021.25], np.float32).tofile(f)
        np.array([depth.shape[1], depth.shape[0]], np.int32).tofile(f)
        depth.astype(np.float32).tofile(f)


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_sintel(tmp_path):
    src = tmp_path / "sintel"
    depth = np.full((H, W), 4.0, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3], depth[0, 4] = np.inf, np.nan, 0.0, 2e4, 1e-7
    for scene in ("alley_1", "bamboo_2"):
        for i in (1, 2, 10):  # numeric order: 1, 2, 10
            save_png(src / "images/training/clean" / scene / f"frame_{i:04d}.png", rgb(i))
            write_dpt(src / "depth/training/depth" / scene / f"frame_{i:04d}.dpt", depth * i)
    report = convert("sintel", src, tmp_path / "out")
    assert report["sequences"] == 2 and report["frames"] == 6
    ds = DatasetFolder(tmp_path / "out" / "sintel")
    assert ds.split("val") == ["alley_1", "bamboo_2"] and ds.split("test") == ["alley_1", "bamboo_2"]
    seq = ds.sequences("test")[0]
    assert seq.meta["source_frames"] == ["frame_0001.png", "frame_0002.png", "frame_0010.png"]
    assert (seq.rgb(2) == rgb(10)).all()  # copied unchanged
    t = seq.target(2)
    assert t[0, :5].tolist() == [-1.0, -1.0, -1.0, 0.0, -1.0]  # inf invalid (not sky), NaN, 0, sky, tiny
    assert t[5, 5] == pytest.approx(1 / 40.0)
    assert seq.meta["depth"]["metric"] is False and seq.meta["depth"]["unit"] == "relative"


def test_eth3d(tmp_path):
    src = tmp_path / "eth3d"
    depth = np.full((H, W), 2.0, np.float32)
    depth[1, 1] = np.inf
    img = src / "courtyard/images/dslr_images/DSC_0001.JPG"
    img.parent.mkdir(parents=True)
    Image.fromarray(rgb()).save(img, format="JPEG")
    gt = src / "courtyard/ground_truth_depth/dslr_images/DSC_0001.JPG"
    gt.parent.mkdir(parents=True)
    depth.tofile(gt)
    convert("eth3d", src, tmp_path / "out")
    seq = DatasetFolder(tmp_path / "out" / "eth3d").sequences("test")[0]
    assert seq.meta["video"] is False and seq.rgb_path(0).read_bytes() == img.read_bytes()
    t = seq.target(0)
    assert t[1, 1] == -1 and t[0, 0] == pytest.approx(0.5)


def test_waymo(tmp_path):
    seg = "segment-10203656353524179475_7625_000_7645_000"  # one of the official test segments
    base = tmp_path / "waymo" / "val" / seg / "FRONT"
    (base / "rgb/original").mkdir(parents=True)
    (base / "depth").mkdir()
    Image.fromarray(rgb()).save(base / "rgb/original/0.jpg", format="JPEG")
    points = np.array([[3.7, 2.2, 10.0],   # truncated to (2, 3)
                       [3.1, 2.9, 5.0],    # same pixel, nearer: kept
                       [40.0, 1.0, 3.0],   # outside: dropped
                       [0.0, 0.0, -2.0]])  # non-positive: no measurement
    np.save(base / "depth/0.npy", points)
    convert("waymo", tmp_path / "waymo", tmp_path / "out")
    ds = DatasetFolder(tmp_path / "out" / "waymo")
    assert ds.split("test") == [seg]
    seq = ds.sequences("test")[0]
    t = seq.target(0)
    assert seq.meta["depth"]["sparse"] is True
    assert t[2, 3] == pytest.approx(0.2) and (t >= 0).sum() == 1


def test_unreal4k(tmp_path):
    disp = np.full((H, W), 8.0, np.float32)
    disp[0, :3] = [np.nan, -1.0, 0.0]
    save_png(tmp_path / "u/00000/Image0/00000.png", rgb())
    (tmp_path / "u/00000/Disp0").mkdir(parents=True)
    np.save(tmp_path / "u/00000/Disp0/00000.npy", disp)
    convert("unreal4k", tmp_path / "u", tmp_path / "out")
    t = DatasetFolder(tmp_path / "out" / "unreal4k").sequences("test")[0].target(0)
    assert t[0, :4].tolist() == [-1.0, -1.0, 0.0, 8.0]


def test_urbansyn_flat_release(tmp_path):
    OpenEXR = pytest.importorskip("OpenEXR")
    src = tmp_path / "urbansyn"
    for i in (1, 2):
        save_png(src / f"rgb/rgb_{i:04d}.png", rgb(i))
        depth = np.full((H, W), 5e-5, np.float32)  # 5 m
        depth[0, 0] = 0.0
        (src / "depth").mkdir(exist_ok=True)
        with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"Y": depth}) as f:
            f.write(str(src / f"depth/depth_{i:04d}.exr"))
        labels = np.zeros((H, W), np.uint8)
        labels[5:, :] = 10  # sky
        save_png(src / f"ss/ss_{i:04d}.png", labels)
    convert("urbansyn", src, tmp_path / "out")
    ds = DatasetFolder(tmp_path / "out" / "urbansyn")
    seq = ds.sequences("test")[0]
    t = seq.target(1)
    assert len(seq) == 2 and t[1, 1] == pytest.approx(0.2) and t[0, 0] == -1 and (t[5:] == 0).all()


def test_loader_contract_and_strict_metadata(tmp_path):
    from flashdepth.data.sequence import DepthSpec, SequenceWriter, to_inverse_depth

    spec = DepthSpec(kind="depth", unit="m", clamp_min_depth=0.01)
    stored = np.array([[0.001, 2.0, np.inf, np.nan, -1.0]])
    assert to_inverse_depth(stored, spec).tolist() == [[100.0, 0.5, 0.0, -1.0, -1.0]]
    w = SequenceWriter(tmp_path / "ds", "mine", "seq", spec)
    w.add(rgb(), np.ones((H, W), np.float32), source_name="a.png")
    seq = w.close()
    assert len(seq) == 1 and seq.validate()["frames"] == 1
    meta = json.loads((seq.path / "sequence.json").read_text())
    meta["colour"] = "srgb"
    (seq.path / "sequence.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="unknown key"):
        SequenceFolder(seq.path)
    with pytest.raises(DatasetFormatError, match="depth of frame 1"):
        w2 = SequenceWriter(tmp_path / "ds", "mine", "bad", spec)
        w2.add(rgb(), np.ones((H, W), np.float32))
        w2.add(rgb(), np.ones((H + 1, W), np.float32))
