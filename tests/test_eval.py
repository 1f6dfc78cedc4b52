"""`flashdepth eval` end to end on a fabricated dataset, several models side by side."""

import json

import numpy as np
import pytest
import torch.nn.functional as F

from flashdepth import FlashDepth
from flashdepth_cli.main import main
from flashdepth.data import DatasetFolder
from flashdepth.data.sequence import DepthSpec, SequenceWriter, write_dataset_json
from flashdepth.metrics import depth_metrics
from flashdepth.session import DepthSession
from flashdepth.weights import save_checkpoint

from conftest import TINY, randomize
from media import make_frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "toy"
    rng = np.random.default_rng(0)
    for name, video in (("walk", True), ("stills", False)):
        w = SequenceWriter(root, "toy", name, DepthSpec(kind="depth", unit="m"), video=video)
        for i, image in enumerate(make_frames(4, 126, 168, seed=len(name))):
            depth = rng.uniform(1, 20, (126, 168)).astype(np.float32)
            depth[:10] = np.inf  # sky
            depth[-5:, :7] = np.nan  # invalid
            pose = np.eye(4)
            pose[0, 3] = 0.05 * i
            w.add(image, depth, source_name=f"{i}.png", intrinsics=(100.0, 100.0, 84.0, 63.0), pose=pose)
        w.close()
    write_dataset_json(root, "toy", {"test": ["walk", "stills"]})
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    s = randomize(FlashDepth(TINY["s"]), seed=4).eval()
    d = randomize(FlashDepth(TINY["dav2"]), seed=5).eval()
    return {"s": (s, save_checkpoint(s, folder / "s.pth")), "dav2": (d, save_checkpoint(d, folder / "d.pth"))}


def test_eval_two_models_side_by_side(dataset, checkpoints, tmp_path, capsys):
    out = tmp_path / "scores.json"
    code = main(["eval", "--data", str(dataset), "--model", f"tiny-s={checkpoints['s'][1]}",
                 f"tiny-dav2={checkpoints['dav2'][1]}", "--device", "cpu", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "## Per sequence" in printed and "## Per dataset" in printed and "| tiny-dav2 | toy |" in printed
    records = json.loads(out.read_text())
    assert [(r["model"], r["sequence"]) for r in records] == [
        ("tiny-s", "walk"), ("tiny-s", "stills"), ("tiny-dav2", "walk"), ("tiny-dav2", "stills")]
    for r in records:
        assert {"model", "dataset", "sequence", "frames", "abs_rel", "delta1", "boundary_f1", "scale_std"} <= set(r)
        assert r["dataset"] == "toy" and r["frames"] == 4 and 0 <= r["delta1"] <= 1 and r["abs_rel"] > 0
    walk, stills = records[0], records[1]
    assert walk["scale_std"] >= 0 and walk["tae"] is not None and walk["video"] is True
    assert stills["video"] is False  # an image collection: temporal numbers are not meaningful

    # The numbers equal the metrics applied to the session's predictions directly.
    model = checkpoints["s"][0]
    seq = DatasetFolder(dataset).sequences("test")[0]
    session = DepthSession(model, device="cpu", size=(126, 168))
    preds, gts = [], []
    for i in range(len(seq)):
        p = session.predict(seq.rgb(i))
        preds.append(F.interpolate(p[None, None], size=(126, 168), mode="bilinear", align_corners=True)[0, 0].numpy())
        gts.append(seq.target(i))
    direct = depth_metrics(np.stack(preds), np.stack(gts))
    assert walk["abs_rel"] == pytest.approx(direct["abs_rel"], rel=1e-5)
    assert walk["delta1"] == pytest.approx(direct["delta1"], rel=1e-5)


def test_eval_bad_inputs(tmp_path, checkpoints, dataset, capsys):
    assert main(["eval", "--data", str(tmp_path), "--model", f"x={checkpoints['s'][1]}"]) == 2
    assert "convert" in capsys.readouterr().err
    assert main(["eval", "--data", str(dataset), "--split", "train", "--model", f"x={checkpoints['s'][1]}"]) == 2
    assert "no split 'train'" in capsys.readouterr().err


def test_convert_command(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "u" / "00000"
    (src / "Image0").mkdir(parents=True)
    (src / "Disp0").mkdir()
    Image.fromarray(make_frames(1)[0]).save(src / "Image0" / "00000.png")
    np.save(src / "Disp0" / "00000.npy", np.ones((140, 196), np.float32))
    assert main(["convert", "unreal4k", str(tmp_path / "u"), str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 1
    with pytest.raises(SystemExit) as exit_code:  # choices come from the dataset table
        main(["convert", "kitti", str(tmp_path / "u"), str(tmp_path / "out")])
    assert exit_code.value.code == 2 and "invalid choice: 'kitti'" in capsys.readouterr().err
