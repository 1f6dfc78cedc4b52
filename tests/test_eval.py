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
from flashdepth.inference.session import DepthSession
from flashdepth.inference.weights import save_checkpoint

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


def test_evaluate_corpus_is_the_one_loop(dataset, checkpoints, capsys):
    """The library's corpus loop: one row per sequence equal to evaluate_sequence on a fresh
    session, the summary the mean of the rows, progress through on_row, nothing printed, and a
    model in training mode left in training mode (training validation calls it mid-training)."""
    from flashdepth.apps.evaluate import EvalOptions, evaluate_corpus, evaluate_sequence

    model = randomize(FlashDepth(TINY["s"]), seed=4)
    model.train()
    sequences = DatasetFolder(dataset).sequences("test")
    seen = []
    result = evaluate_corpus(model, sequences, EvalOptions(max_frames=3), device="cpu", name="m", on_row=seen.append)
    assert model.training  # put back
    assert capsys.readouterr() == ("", "")
    assert seen == result.rows and [r["sequence"] for r in result.rows] == ["walk", "stills"]
    session = DepthSession(model, device="cpu")
    for row, seq in zip(result.rows, sequences):
        alone = evaluate_sequence(session, seq, EvalOptions(max_frames=3))
        assert row["model"] == "m" and row["dataset"] == "toy" and row["frames"] == 3
        assert row["abs_rel"] == pytest.approx(alone["abs_rel"], rel=1e-6)
    (summary,) = result.summary
    assert summary["sequences"] == 2 and summary["frames"] == 6
    assert summary["delta1"] == pytest.approx(np.mean([r["delta1"] for r in result.rows]))
    # a ready session is used as it is, and the default name is the model's config name
    assert evaluate_corpus(session, sequences[:1], EvalOptions(max_frames=1)).rows[0]["model"] == model.config.name


def test_eval_refuses_a_cap_that_leaves_nothing_to_score(dataset, checkpoints, tmp_path, capsys):
    """A non-positive cap is refused; a tiny one reports missing scores, never a perfect 0 / 1."""
    from flashdepth.errors import ConfigError
    from flashdepth.apps.evaluate import EvalOptions

    ckpt = checkpoints["s"][1]
    for bad in ("-1", "0", "nan"):
        assert main(["eval", "--data", str(dataset), "--model", f"x={ckpt}", "--max-depth", bad]) == 2
        assert f"--max-depth {bad}: give a positive distance" in capsys.readouterr().err
    assert main(["eval", "--data", str(dataset), "--model", f"x={ckpt}", "--dataset-max-depth", "toy=-3"]) == 2
    assert "toy=-3" in capsys.readouterr().err
    for bad in (-1.0, 0.0, float("nan")):
        with pytest.raises(ConfigError, match="max_depth"):
            EvalOptions(max_depth=bad)
        with pytest.raises(ConfigError, match="max_depth"):
            depth_metrics(np.ones((2, 3)), np.ones((2, 3)), max_depth=bad)
    with pytest.raises(ConfigError, match="dataset_max_depth"):
        EvalOptions(dataset_max_depth={"toy": 0.0})

    out = tmp_path / "scores.json"
    assert main(["eval", "--data", str(dataset), "--model", f"x={ckpt}", "--max-depth", "0.001", "--max-frames", "2",
                 "--device", "cpu", "--json", str(out)]) == 0
    assert "no valid pixels" in capsys.readouterr().err
    for record in json.loads(out.read_text()):
        assert record["valid_pixels"] == 0
        assert all(record[k] is None for k in ("abs_rel", "delta1", "boundary_f1", "scale_std", "tae", "scale"))


def test_no_valid_pixel_is_missing_in_the_metric_functions():
    from flashdepth.metrics import SequenceAccumulator

    gt = np.random.default_rng(0).uniform(0.2, 0.9, (2, 4, 5))  # everything 1.1 to 5 m away
    gt[:, 0] = 0.0  # and sky
    m = depth_metrics(gt * 3, gt, max_depth=1.0)  # every pixel beyond the cap: nothing to fit
    assert m["abs_rel"] is None and m["delta1"] is None and m["valid_pixels"] == 0
    acc = SequenceAccumulator(max_depth=1.0)
    for g in gt:
        acc.add(g * 3, g)
    assert acc.finish(lambda i: gt[i]) == m
    assert depth_metrics(gt * 3, gt, max_depth=10.0)["abs_rel"] == pytest.approx(0.0, abs=1e-12)


def test_eval_fails_early_on_an_empty_sequence_or_an_unwritable_json(dataset, checkpoints, tmp_path, capsys,
                                                                     monkeypatch):
    import shutil

    import flashdepth.apps.evaluate

    def never(*args, **kwargs):
        raise AssertionError("the evaluation started")

    monkeypatch.setattr(flashdepth.apps.evaluate, "evaluate_corpus", never)
    ckpt = checkpoints["s"][1]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target in (blocker / "scores.json", tmp_path):  # parent is a file; a folder
        assert main(["eval", "--data", str(dataset), "--model", f"x={ckpt}", "--json", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"--json {target}" in err and "internal error" not in err

    empty = tmp_path / "toy" / "walk"
    shutil.copytree(dataset / "walk", empty)
    meta = json.loads((empty / "sequence.json").read_text())
    (empty / "sequence.json").write_text(json.dumps({**meta, "num_frames": 0}))
    assert main(["eval", "--data", str(empty), "--model", f"x={ckpt}"]) == 2
    err = capsys.readouterr().err
    assert "toy/walk" in err and "no frames" in err and "internal error" not in err


def _truth(seq, invalid_fill=3.0):
    """The ground truth of a sequence as depth (inf = sky) and as disparity, invalid pixels filled."""
    disparity = np.stack([seq.target(i) for i in range(len(seq))]).astype(np.float64)  # (T, H, W)
    disparity = np.where(disparity < 0, 1 / invalid_fill, disparity)
    with np.errstate(divide="ignore"):
        return 1 / disparity, disparity


def test_saved_predictions_of_the_ground_truth_in_either_convention_score_perfectly(dataset, tmp_path, capsys):
    """--predictions scores another method's saved outputs: the ground truth, saved as depth in one
    array per sequence or as disparity one file per frame, is perfect; the wrong kind is not."""
    walk, stills = DatasetFolder(dataset).sequences("test")
    as_depth, as_disparity = tmp_path / "as-depth", tmp_path / "as-disparity"
    for seq in (walk, stills):
        depth, disparity = _truth(seq)
        (as_depth / "toy").mkdir(parents=True, exist_ok=True)
        np.save(as_depth / "toy" / f"{seq.name}.npy", depth.astype(np.float32))  # DIR/DATASET/SEQUENCE.npy
        (as_disparity / seq.name).mkdir(parents=True)  # DIR/SEQUENCE/NNNNNN.npy, no dataset level
        for i, frame in enumerate(disparity):
            np.save(as_disparity / seq.name / f"{i:06d}.npy", 7 * frame + 0.25)  # any scale and shift
    out = tmp_path / "scores.json"
    for folder, kind in ((as_depth, "depth"), (as_disparity, "disparity")):
        assert main(["eval", "--data", str(dataset), "--predictions", f"truth={folder}", "--predictions-kind", kind,
                     "--json", str(out)]) == 0
        records = json.loads(out.read_text())
        assert [(r["model"], r["sequence"]) for r in records] == [("truth", "walk"), ("truth", "stills")]
        for r in records:
            assert r["abs_rel"] == pytest.approx(0.0, abs=1e-5) and r["delta1"] == 1.0 and r["frames"] == 4
    assert "| truth | toy |" in capsys.readouterr().out
    # The kind matters: disparity read as depth is far from perfect, and depth with its sky at +inf
    # read as disparity is refused.
    assert main(["eval", "--data", str(dataset), "--predictions", str(as_disparity), "--predictions-kind", "depth",
                 "--json", str(out)]) == 0
    assert all(r["abs_rel"] > 0.1 and r["model"] == "as-disparity" for r in json.loads(out.read_text()))
    assert main(["eval", "--data", str(dataset), "--predictions", str(as_depth), "--predictions-kind", "disparity"]) == 2
    assert "infinite disparity value(s) (write 0 for infinitely far); the predictions are corrupt or not disparity" \
        in capsys.readouterr().err

    # The same from Python.
    from flashdepth.apps.evaluate import EvalOptions, evaluate_predictions
    from flashdepth.metrics.predictions import PredictionFolder

    result = evaluate_predictions(PredictionFolder(as_disparity, "disparity"), [walk], EvalOptions(max_frames=2))
    assert result.rows[0]["frames"] == 2 and result.rows[0]["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert result.summary[0]["model"] == "as-disparity"


def test_corrupt_or_mismatched_predictions_are_clear_errors(dataset, tmp_path, capsys, monkeypatch):
    import flashdepth.apps.evaluate
    from flashdepth.errors import PredictionFormatError, UnknownNameError
    from flashdepth.apps.evaluate import EvalOptions, evaluate_predictions
    from flashdepth.metrics.predictions import PredictionFolder

    walk, stills = DatasetFolder(dataset).sequences("test")
    root = tmp_path / "preds"

    def save(walk_array, stills_array=None):
        root.mkdir(exist_ok=True)
        np.save(root / "walk.npy", walk_array)
        np.save(root / "stills.npy", _truth(stills)[0] if stills_array is None else stills_array)

    def fails(*extra):
        code = main(["eval", "--data", str(dataset), "--predictions", str(root), "--predictions-kind", "depth", *extra])
        err = capsys.readouterr().err
        assert code == 2 and "internal error" not in err, err
        return err

    depth = _truth(walk)[0]
    nan = depth.copy()
    nan[2, 5, 5] = np.nan
    save(nan)
    assert f"{root / 'walk.npy'} frame 2: 1 NaN value(s)" in fails()
    negative = depth.copy()
    negative[1, 0, 0] = -2.0
    save(negative)
    assert "frame 1: 1 depth(s) of 0 or less" in fails()
    # Frame count and size are checked before anything is scored.
    monkeypatch.setattr(flashdepth.apps.evaluate, "evaluate_predictions", lambda *a, **k: pytest.fail("scored"))
    save(depth[:3])
    assert "holds 3 frame(s) but sequence toy/walk has 4" in fails()
    save(depth, _truth(stills)[0][:, :-1])
    assert "is 126x168 (height x width)" in fails() and "125x168" in fails()
    save(depth[0])
    assert "expected (frames, height, width) = (4, 126, 168)" in fails()
    (root / "walk.npy").unlink()
    assert "no predictions for sequence toy/walk" in fails()
    (root / "walk.npy").write_text("not an array")
    assert "is not a readable .npy array" in fails()
    # Options that would be ignored are refused.
    assert main(["eval", "--data", str(dataset), "--predictions", str(root)]) == 2
    assert "--predictions-kind" in capsys.readouterr().err
    assert main(["eval", "--data", str(dataset), "--predictions", str(root), "--predictions-kind", "depth",
                 "--preset", "base"]) == 2
    assert "--preset" in capsys.readouterr().err
    assert main(["eval", "--data", str(dataset)]) == 2
    assert "nothing to score" in capsys.readouterr().err
    monkeypatch.undo()
    with pytest.raises(UnknownNameError, match="depth, disparity"):
        PredictionFolder(root, "metres")
    with pytest.raises(PredictionFormatError, match="does not exist"):
        PredictionFolder(tmp_path / "nowhere", "depth")
    save(nan)
    with pytest.raises(PredictionFormatError, match="NaN"):
        evaluate_predictions(PredictionFolder(root, "depth"), [walk], EvalOptions())


def test_prediction_kinds_reach_the_help(capsys):
    from flashdepth.metrics.predictions import PREDICTION_KINDS

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for kind in PREDICTION_KINDS.values():
        assert f"{kind.name}: {' '.join(kind.description.split())}" in text


def test_alignment_option_and_the_protocol_in_the_records(dataset, checkpoints, tmp_path):
    """--alignment none scores metres as predicted: the ground truth saved as depth in metres is
    perfect with every metric, a model's output is read as inverse depth x 100; every record says
    which protocol produced it."""
    from flashdepth.apps.evaluate import EvalOptions, evaluate_sequence
    from flashdepth.geometry import DEPTH_SCALE

    walk, stills = DatasetFolder(dataset).sequences("test")
    root = tmp_path / "preds"
    root.mkdir()
    for seq in (walk, stills):
        np.save(root / f"{seq.name}.npy", _truth(seq)[0])
    out = tmp_path / "scores.json"
    assert main(["eval", "--data", str(dataset), "--predictions", str(root), "--predictions-kind", "depth",
                 "--alignment", "none", "--max-depth", "15", "--json", str(out)]) == 0
    for r in json.loads(out.read_text()):
        assert (r["alignment"], r["max_depth"], r["preset"], r["per_frame_align"]) == ("none", 15.0, None, False)
        assert r["abs_rel"] == pytest.approx(0, abs=1e-6) and r["rmse"] == pytest.approx(0, abs=1e-5)
        assert r["delta1"] == r["delta3"] == 1.0 and (r["scale"], r["shift"]) == (1.0, 0.0)
    scaled = tmp_path / "scaled"  # right up to a factor: only the scale alignments make it perfect
    scaled.mkdir()
    for seq in (walk, stills):
        np.save(scaled / f"{seq.name}.npy", 2.5 * _truth(seq)[0])
    for alignment, perfect in (("none", False), ("scale", True), ("median-scale", True)):
        assert main(["eval", "--data", str(dataset), "--predictions", str(scaled), "--predictions-kind", "depth",
                     "--alignment", alignment, "--json", str(out)]) == 0
        record = json.loads(out.read_text())[0]
        assert (record["abs_rel"] < 1e-6) == perfect and record["alignment"] == alignment

    model = checkpoints["s"][0]
    session = DepthSession(model, device="cpu")
    row = evaluate_sequence(session, walk, EvalOptions(alignment="none", max_frames=2))
    assert (row["alignment"], row["preset"], row["max_depth"]) == ("none", "base", 70.0)
    session = DepthSession(model, device="cpu", size=(126, 168))
    preds = np.stack([F.interpolate(session.predict(walk.rgb(i))[None, None], size=(126, 168), mode="bilinear",
                                    align_corners=True)[0, 0].numpy() for i in range(2)])
    direct = depth_metrics(preds / DEPTH_SCALE, np.stack([walk.target(i) for i in range(2)]), alignment="none")
    for key in ("abs_rel", "rmse", "silog", "delta2"):
        assert row[key] == pytest.approx(direct[key], rel=1e-5), key
