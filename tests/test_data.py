"""Sequence folders and the converters of the evaluation sets, on tiny samples in native formats."""

import json

import numpy as np
import pytest
from PIL import Image

from flashdepth.data import DatasetFolder, SequenceFolder
from flashdepth.data.datasets import convert
from flashdepth.errors import DatasetFormatError

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


# ------------------------------------------------------------------------- training sets
def _exr(path, array):
    OpenEXR = pytest.importorskip("OpenEXR")
    path.parent.mkdir(parents=True, exist_ok=True)
    with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"Y": array.astype(np.float32)}) as f:
        f.write(str(path))


def test_mvs_synth(tmp_path):
    base = tmp_path / "mvs" / "GTAV_1080"
    for scene in ("0000", "0118"):
        for i in range(2):
            save_png(base / scene / "images" / f"{i:04d}.png", rgb(i))
            depth = np.full((H, W), 50.0)
            depth[0, 0], depth[0, 1] = np.inf, 0.0
            _exr(base / scene / "depths" / f"{i:04d}.exr", depth)
    convert("mvs-synth", tmp_path / "mvs", tmp_path / "out")
    ds = DatasetFolder(tmp_path / "out" / "mvs-synth")
    assert ds.split("train") == ["0000"] and ds.split("val") == ["0118"]
    t = ds.sequences("train")[0].target(0)
    assert t[0, 0] == 0.0 and t[0, 1] == -1 and t[1, 1] == pytest.approx(1 / 5.0)  # raw / 10 = 5 -> 0.2


def test_spring(tmp_path):
    h5py = pytest.importorskip("h5py")
    scene = tmp_path / "spring" / "train" / "0001"
    disp = np.full((2 * H, 2 * W), 6.5, np.float32)
    disp[0, 0], disp[0, 2], disp[1, 1] = np.nan, 0.0, 999.0  # (1, 1) is dropped by the 2x subsampling
    for i in (1, 2):
        save_png(scene / "frame_left" / f"frame_left_{i:04d}.png", rgb(i))
        (scene / "disp1_left").mkdir(exist_ok=True)
        with h5py.File(scene / "disp1_left" / f"disp1_left_{i:04d}.dsp5", "w") as f:
            f.create_dataset("disparity", data=disp * i)
    (scene / "cam_data").mkdir()
    np.savetxt(scene / "cam_data" / "intrinsics.txt", [[1000, 1000, 15, 10], [500, 500, 15, 10]])
    convert("spring", tmp_path / "spring", tmp_path / "out")
    seq = DatasetFolder(tmp_path / "out" / "spring").sequences("train")[0]
    t0, t1 = seq.target(0), seq.target(1)
    assert t0[0, 0] == -1 and t0[0, 1] == 0.0 and t0[2, 2] == pytest.approx(6.5 / (1000 * 0.065))
    assert t1[2, 2] == pytest.approx(13.0 / (500 * 0.065))  # per-frame focal length
    assert seq.intrinsics().shape == (2, 4)


def test_dynamic_replica(tmp_path):
    seq = "abc-1_obj_source_left"
    base = tmp_path / "dr" / "train" / seq
    depth = np.full((H, W), 2.5, np.float16)
    depth[0, 0], depth[0, 1] = 0, np.inf
    save_png(base / "images" / f"{seq}-0000.png", rgb())
    (base / "depths").mkdir(parents=True)
    Image.fromarray(depth.view(np.uint16)).save(base / "depths" / f"{seq}_0000.geometric.png")
    (tmp_path / "dr" / "train" / "abc-1_obj_source_right").mkdir()  # right camera: ignored
    convert("dynamicreplica", tmp_path / "dr", tmp_path / "out")
    t = DatasetFolder(tmp_path / "out" / "dynamicreplica").sequences("train")[0].target(0)
    assert t[0, 0] == -1 and t[0, 1] == -1 and t[3, 3] == pytest.approx(0.4)


def test_tartanair(tmp_path):
    for env in ("abandonedfactory", "amusement"):
        traj = tmp_path / "ta" / env / "Easy" / "P000"
        save_png(traj / "image_left" / "000000_left.png", rgb())
        depth = np.full((H, W), 4.0, np.float32)
        depth[0, 0], depth[0, 1] = 5000.0, np.inf
        (traj / "depth_left").mkdir()
        np.save(traj / "depth_left" / "000000_left_depth.npy", depth)
    report = convert("tartanair", tmp_path / "ta", tmp_path / "out")
    ds = DatasetFolder(tmp_path / "out" / "tartanair")
    assert ds.split("train") == ["abandonedfactory/Easy/P000"] and report["sequences"] == 1
    t = ds.sequences("train")[0].target(0)
    assert t[0, 0] == 0.0 and t[0, 1] == -1 and t[1, 1] == pytest.approx(0.25)


def test_pointodyssey(tmp_path):
    base = tmp_path / "po" / "train" / "dancing"
    (base / "rgbs").mkdir(parents=True)
    Image.fromarray(rgb()).save(base / "rgbs" / "rgb_00000.jpg", format="JPEG")
    code = np.full((H, W), 655, np.uint16)  # ~10 m
    code[0, 0], code[0, 1] = 0, 1  # invalid; 0.015 m -> valid
    code[0, 2] = 0
    save_png(base / "depths" / "depth_00000.png", code)
    (tmp_path / "po" / "train" / "not_selected" / "rgbs").mkdir(parents=True)
    convert("pointodyssey", tmp_path / "po", tmp_path / "out")
    ds = DatasetFolder(tmp_path / "out" / "pointodyssey")
    assert ds.split("train") == ["dancing"]
    t = ds.sequences("train")[0].target(0)
    assert t[0, 0] == -1 and t[1, 1] == pytest.approx(65535 / 655 / 1000, rel=1e-5)
    assert t[0, 1] == pytest.approx(1 / (1000 / 65535), rel=1e-5)  # 0.0153 m is above the 0.01 m clamp


def test_missing_required_keys_are_format_errors(tmp_path):
    import json

    from flashdepth.data.sequence import DatasetFolder, SequenceFolder

    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "sequence.json").write_text(json.dumps({"format": "flashdepth-sequence", "version": 1, "width": 4}))
    with pytest.raises(DatasetFormatError, match="missing required key.*num_frames.*height"):
        SequenceFolder(seq)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "flashdepth-dataset", "version": 2, "name": "x"}))
    with pytest.raises(DatasetFormatError, match="version 1"):
        DatasetFolder(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "flashdepth-dataset", "version": 1}))
    with pytest.raises(DatasetFormatError, match="missing required key.*name"):
        DatasetFolder(tmp_path)
