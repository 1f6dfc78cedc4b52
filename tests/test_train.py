"""Training: DDP really averages gradients, --resume is exact, a tiny model learns, and the
trained model streams the same as it trains."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth import FlashDepth
from flashdepth.data.sequence import DepthSpec, SequenceWriter, write_dataset_json
from flashdepth.train import ClipDataset, DepthLoss, load_train_config
from flashdepth.train.data import resample_target
from flashdepth.inference.weights import save_checkpoint
from flashdepth_cli.training import train

from conftest import TINY, randomize
from media import make_frames

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    names = []
    for s in range(3):
        name = f"seq{s}"
        w = SequenceWriter(root / "toy", "toy", name, DepthSpec(kind="depth", unit="m"))
        for i, image in enumerate(make_frames(8, 70, 98, seed=s)):
            depth = (2 + image[..., 0].astype(np.float32) / 64 + rng.uniform(0, 0.1, (70, 98))).astype(np.float32)
            depth[:4] = np.inf
            depth[-3:, :5] = np.nan
            w.add(image, depth)
        w.close()
        names.append(name)
    write_dataset_json(root / "toy", "toy", {"train": names, "val": names[:1]})
    return root


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, toy_data):
    """A TOML recipe for the tiny FlashDepth-S, initialised from a saved checkpoint."""
    folder = tmp_path_factory.mktemp("cfg")
    model = randomize(FlashDepth(TINY["s"]), seed=2)
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(5.0)  # a live head, as a pretrained one is
    init = save_checkpoint(model, folder / "init.pth")
    model_toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in TINY["s"].to_dict().items()
                           if v is not None and not isinstance(v, dict))
    tables = ""
    for key, value in TINY["s"].to_dict().items():
        if isinstance(value, dict):
            tables += f"\n[model_config.{key}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in value.items() if v is not None)
    text = f"""
init = "{init}"
steps = 4
batch_size = 2
grad_checkpointing = true
log_every = 1
val_every = 4
save_every = 2

[data]
root = "{toy_data}"
datasets = ["toy"]
clip_length = 3
crop_size = [56, 70]
val_datasets = ["toy"]
val_preset = "native"
val_max_frames = 3
num_workers = 0

[optim]
warmup_steps = 2
lr_vit = 1e-4
lr_dpt = 1e-3
lr_temporal = 1e-3

[model_config]
{model_toml}
{tables}
"""
    path = folder / "tiny.toml"
    path.write_text(text)
    return path


def _final(out: Path) -> dict:
    return torch.load(sorted(out.glob("step_*.pth"))[-1], weights_only=True)["model"]


def test_config_is_typed_and_strict(tiny_config):
    config = load_train_config(tiny_config, ["optim.lr_vit=2e-5", "steps=7"])
    assert config.optim.lr_vit == 2e-5 and config.steps == 7 and config.model_config == TINY["s"]
    with pytest.raises(flashdepth.ConfigError, match="optim.lr_vti"):
        load_train_config(tiny_config, ["optim.lr_vti=1"])
    for recipe in ("stage1-s", "stage1-l", "stage2-full"):
        load_train_config(HERE.parent / "configs" / f"{recipe}.toml")


def test_resume_is_exact(tiny_config, tmp_path, capsys):
    train(str(tiny_config), [f"out_dir={tmp_path / 'straight'}"])
    train(str(tiny_config), [f"out_dir={tmp_path / 'halves'}", "steps=2"])
    train(str(tiny_config), [f"out_dir={tmp_path / 'halves'}"], resume=str(tmp_path / "halves" / "step_0000002.pth"))
    straight, halves = _final(tmp_path / "straight"), _final(tmp_path / "halves")
    assert all(torch.equal(straight[k], halves[k]) for k in straight)
    assert any(not torch.equal(straight[k], v) for k, v in torch.load(tmp_path / "halves" / "step_0000002.pth",
                                                                        weights_only=True)["model"].items())
    out = capsys.readouterr().out
    assert "val toy: AbsRel" in out and "resumed from" in out
    # the checkpoint is a model file too: load_model reads it
    model = flashdepth.load_model(sorted((tmp_path / "straight").glob("step_*.pth"))[-1])
    assert model.config == TINY["s"]


def test_two_process_gloo_keeps_ranks_identical(tiny_config, tmp_path):
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(HERE.parent)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "flashdepth_cli", "train", str(tiny_config), f"out_dir={out}", "check_sync=true", "steps=3",
           "val_every=3", "data.val_split=train", "data.val_max_frames=2", "batch_size=1"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [(out / f"digests-rank{r}.txt").read_text().split("\n") for r in (0, 1)]
    assert ranks[0] == ranks[1] and len([l for l in ranks[0] if l]) == 3
    assert len({l.split()[1] for l in ranks[0] if l}) == 3  # the parameters did change every step
    assert "2 process(es)" in result.stdout
    # validation ran on both ranks, sharded, and the all-reduced means are those of one process
    from flashdepth.train import validate

    lines = [l for l in result.stdout.splitlines() if "val toy" in l]
    assert len(lines) == 1 and "(3 sequences)" in lines[0]
    config = load_train_config(tiny_config, ["data.val_split=train", "data.val_max_frames=2"])
    alone = validate(flashdepth.load_model(out / "step_0000003.pth"), config, flashdepth.train.World(),
                     torch.device("cpu"), "fp32", 3, log=lambda message: None)
    assert f"AbsRel {alone['toy']['abs_rel']:.4f} delta1 {alone['toy']['delta1']:.4f}" in lines[0]


def test_tiny_model_overfits_one_clip():
    torch.manual_seed(0)
    model = randomize(FlashDepth(TINY["s"]), seed=1)
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(5.0)
    loss_fn = DepthLoss(model)
    video = torch.randn(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 56), torch.linspace(0, 1, 56), indexing="ij")
    target = ((0.2 + 0.5 * yy + 0.2 * torch.sin(6 * xx)) / 10).expand(1, 3, 56, 56).clone()
    target[..., :3, :] = -1.0  # invalid rows are ignored
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        loss = loss_fn(video, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10
    # after training, streaming frame by frame equals the training unroll
    model.eval()
    with torch.no_grad():
        unrolled, _ = model.forward_sequence(video)
        state, steps = None, []
        for t in range(3):
            d, state = model(video[:, t], state)
            steps.append(d)
    assert ((torch.stack(steps, 1) - unrolled).norm() / unrolled.norm()) < 1e-5


class Fixed(torch.nn.Module):
    """A model whose every prediction is ``out``: the losses' tests feed it what they need."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward_sequence(self, video):
        return self.out, None


def test_ssi_loss_is_invariant_to_scale_and_shift():
    target = torch.rand(1, 2, 8, 8) + 0.1
    pred = 3.0 * target * 100 + 7.0
    assert DepthLoss(Fixed(pred), "ssi")(None, target).item() < 1e-3
    assert DepthLoss(Fixed(pred), "l1")(None, target).item() > 1
    # the scale is taken positive: a prediction running opposite to the truth is not flipped
    # (oracle: |s| = 1/3 aligns it to 100 (2 mean - target), an error of 200 |target - mean|, about 50 here)
    inverted = -3.0 * target * 100 + 7.0
    assert DepthLoss(Fixed(inverted), "ssi")(None, target).item() > 10


def test_ssi_clip_forgives_one_scale_per_clip_but_not_one_per_frame():
    """ssi-clip fits one scale and shift over a clip's frames: a whole clip off by one scale and
    shift costs nothing (in each clip of the batch its own), frames off by different scales cost
    what the best single fit leaves, which ssi (per frame) forgives."""
    target = torch.rand(2, 3, 8, 8) + 0.1  # (B, T, H, W) inverse depth in 1/m
    per_clip = torch.tensor([2.0, 5.0])[:, None, None, None] * target * 100 + 7.0  # (B, T, H, W)
    assert DepthLoss(Fixed(per_clip), "ssi-clip")(None, target).item() < 1e-3
    per_frame = torch.tensor([1.0, 2.0, 4.0])[None, :, None, None] * target * 100  # (B, T, H, W)
    assert DepthLoss(Fixed(per_frame), "ssi")(None, target).item() < 1e-3
    # oracle: the least-squares fit of [1, 2, 4] x target by one scale and shift, by numpy
    import numpy as np

    t = target.numpy() * 100
    p = np.array([1.0, 2.0, 4.0])[None, :, None, None] * t
    residual = []
    for b in range(2):
        a, c = np.polyfit(p[b].ravel(), t[b].ravel(), 1)
        residual.append(np.abs(a * p[b] + c - t[b]).mean())
    assert abs(DepthLoss(Fixed(per_frame), "ssi-clip")(None, target).item() - np.mean(residual)) < 1e-3 * np.mean(residual) + 1e-4
    assert np.mean(residual) > 1

def test_l1_scale_adds_the_frames_global_scale_error_and_skips_sky():
    """l1-scale = l1 + SCALE_WEIGHT x mean over frames of |mean log(pred / target)| over non-sky
    pixels. Oracle: a frame off by a factor c everywhere costs l1 + 10 |log c| for that frame; a
    per-pixel error that cancels in the log mean costs l1 alone; sky (target 0) adds no log term."""
    from flashdepth.train.choices import SCALE_WEIGHT

    target = torch.rand(1, 2, 8, 8) + 0.1  # 1/m
    target[0, 1, :2] = 0.0  # sky in the second frame
    pred = target * 100 * torch.tensor([1.5, 1.0])[None, :, None, None]  # frame 0 off by 1.5x, frame 1 exact
    l1 = DepthLoss(Fixed(pred), "l1")(None, target).item()
    both = DepthLoss(Fixed(pred), "l1-scale")(None, target).item()
    assert both - l1 == pytest.approx(SCALE_WEIGHT * np.log(1.5) / 2, rel=1e-5)
    wobble = target * 100 * torch.where(torch.arange(64).reshape(8, 8) % 2 == 0, 2.0, 0.5)  # log mean 0
    wobble[0, 1, :2] = 0.0
    assert DepthLoss(Fixed(wobble), "l1-scale")(None, target).item() == pytest.approx(
        DepthLoss(Fixed(wobble), "l1")(None, target).item(), abs=1e-5)


def test_log_loss_weighs_ratio_errors_and_keeps_half_the_frame_scale():
    """log = mean over frames of sqrt(var(e) + 0.5 mean(e)^2), e = log(pred / target) over non-sky
    pixels, plus mean |pred| on sky. Oracles: exact is 0; a frame off by c everywhere costs
    sqrt(0.5) |log c|; a pixel pattern of 2x and 0.5x (log mean 0) costs log 2 wherever it is,
    near or far, where l1 weighs the near pixels more; sky predicted at s costs s."""
    target = torch.rand(1, 2, 8, 8) + 0.1  # 1/m
    exact = target * 100
    assert DepthLoss(Fixed(exact), "log")(None, target).item() < 1e-5
    scaled = exact * torch.tensor([3.0, 1.0])[None, :, None, None]
    assert DepthLoss(Fixed(scaled), "log")(None, target).item() == pytest.approx(0.5 ** 0.5 * np.log(3.0) / 2, rel=1e-4)
    wobble = torch.where(torch.arange(64).reshape(8, 8) % 2 == 0, 2.0, 0.5)
    for far in (1.0, 10.0):  # the same ratio errors on a scene 10x farther
        assert DepthLoss(Fixed(exact / far * wobble), "log")(None, target / far).item() == pytest.approx(np.log(2.0), rel=1e-4)
    sky = target.clone()
    sky[0, 1] = 0.0  # the whole second frame is sky
    pred = exact.clone()
    pred[0, 1] = 0.25
    assert DepthLoss(Fixed(pred), "log")(None, sky).item() == pytest.approx(0.25, abs=1e-4)


def test_clips_and_target_resampling(toy_data):
    ds = ClipDataset.from_folder(toy_data / "toy", "train", stride=2, clip_length=3, crop="center", crop_size=(56, 70))
    assert len(ds) == 24
    video, target = ds[0]
    assert video.shape == (3, 3, 56, 70) and target.shape == (3, 56, 70)
    assert torch.equal(ds[5][0], ds[5][0])  # deterministic per (seed, epoch, index)
    for anchor in range(8):
        frames = ds.window(8, anchor, 2, np.random.default_rng(anchor))
        assert frames == sorted(frames) and anchor in frames and 0 <= frames[0] and frames[-1] < 8
    assert ds.window(4, 1, 2, np.random.default_rng(0)) == [1, 2, 3]  # stride lowered to 1 so the window fits
    t = torch.tensor([[1.0, 1.0, -1.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
    r = resample_target(t, (1, 2))
    assert r.tolist() == [[1.5, -1.0]]  # a mixed footprint is invalid, never an average with -1 or 0
    assert resample_target(torch.zeros(2, 2), (1, 1)).item() == 0.0


def test_non_finite_steps_are_skipped_and_reported(tiny_config, tmp_path, capsys, monkeypatch):
    # From the second step on the loss is NaN (as after a diverged update); the guard must skip
    # those steps and say so. (An infinite learning rate did this before; it is now refused.)
    import flashdepth.train.loop as loop

    class Diverging(DepthLoss):
        calls = 0

        def forward(self, video, target):
            Diverging.calls += 1
            loss = super().forward(video, target)
            return loss * float("nan") if Diverging.calls > 1 else loss

    monkeypatch.setattr(loop, "DepthLoss", Diverging)
    train(str(tiny_config), [f"out_dir={tmp_path}", "steps=3", "val_every=0", "optim.warmup_steps=1"])
    err = capsys.readouterr().err
    assert "step 1 skipped: non-finite" in err and "step 2 skipped: non-finite" in err
    assert "step 0 skipped" not in err


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from flashdepth.errors import ConfigError
    from flashdepth.train import warmup_schedule
    from flashdepth.train.config import OptimConfig, TrainConfig

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = warmup_schedule(optimizer, 4, "cosine", 20)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:4] == [0.5, 1.0, 1.5, 2.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] < 0.05
    with pytest.raises(ConfigError, match="optim.schedule"):
        TrainConfig(optim=OptimConfig(schedule="linear")).validate()


def test_fit_trains_from_python_and_writes_a_loadable_checkpoint(tiny_config, tmp_path, capsys):
    from flashdepth.train import fit

    config = load_train_config(tiny_config, [f"out_dir={tmp_path}", "steps=2", "val_every=0"])
    init = torch.load(config.init, weights_only=True)["model"]
    saved = fit(config)  # no subprocess, no command line
    assert saved == tmp_path / "step_0000002.pth" and saved.is_file()
    assert json.loads((tmp_path / "train_config.json").read_text())["steps"] == 2
    model = flashdepth.load_model(saved)
    assert model.config == TINY["s"]
    trained = model.state_dict()
    assert any(not torch.equal(init[k], trained[k]) for k in init)  # the steps did change the weights
    meta = torch.load(saved, weights_only=True)
    assert meta["step"] == 2 and "optimizer" in meta
    assert "step 2 loss" in capsys.readouterr().out


def test_world_describes_one_or_many_processes():
    from flashdepth.train import World

    assert World().size == 1 and World().main
    with pytest.raises(flashdepth.ConfigError, match="rank=2"):
        World(rank=2, size=2, all_reduce=print, barrier=print, wrap=print)
    with pytest.raises(flashdepth.ConfigError, match="all_reduce"):
        World(rank=0, size=2)  # many processes need the process group's operations


def test_training_follows_the_device_rule_mps_included(tiny_config, monkeypatch):
    """Training used to pick CUDA or CPU only; it now follows flashdepth.device (CUDA, MPS, CPU)."""
    import flashdepth.device
    import flashdepth.train.loop as loop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(flashdepth.device, "_mps_available", lambda: True)
    seen = {}

    class Stop(Exception):
        pass

    def fake_build_run(config, world_size, device, resume=None, log=print):
        seen["device"] = device
        raise Stop

    monkeypatch.setattr(loop, "build_run", fake_build_run)
    config = load_train_config(tiny_config)
    with pytest.raises(Stop):
        loop.fit(config)
    assert seen["device"].type == "mps"
    assert loop.training_precision(config, torch.device("mps")) == "bf16"  # the recipe's precision applies
    assert loop.training_precision(config, torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("override, named", [
    ("optim.lr_vit=-1e-5", "optim.lr_vit"), ("optim.lr_dpt=nan", "optim.lr_dpt"), ("optim.lr_fusion=inf", "lr_fusion"),
    ("steps=0", "steps"), ("steps=-3", "steps"), ("save_every=0", "save_every"), ("batch_size=0", "batch_size"),
    ("batch_size=-2", "batch_size"), ("log_every=0", "log_every"), ("data.num_workers=-1", "data.num_workers"),
    ("optim.betas=[0.9]", "optim.betas"), ("optim.betas=[0.9, 1.5]", "optim.betas"),
    ("data.clip_length=0", "data.clip_length"), ("data.clip_length=1", "data.clip_length"),
    ("val_every=-1", "val_every"), ("optim.warmup_steps=-1", "warmup_steps"), ("data.crop_size=[56]", "crop_size"),
    ("optim.weight_decay=-0.1", "weight_decay"), ("data.strides=[0]", "data.strides"),
])
def test_bad_training_values_are_config_errors(tiny_config, override, named):
    with pytest.raises(flashdepth.ConfigError, match=named.replace(".", r"\.")):
        load_train_config(tiny_config, [override])


def test_bad_values_exit_2_with_one_line_before_any_work(tiny_config, tmp_path, capsys):
    from flashdepth_cli.main import main

    out = tmp_path / "run"
    assert main(["train", str(tiny_config), f"out_dir={out}", "batch_size=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "batch_size=0" in err
    assert not out.exists()


@pytest.mark.parametrize("override, named", [
    ("data.root={missing}", "data.root"),  # no such folder
    ("data.split=nosuch", "data.split"),  # a dataset without that split
    ("data.clip_length=20", "clip_length"),  # no sequence long enough
    ("batch_size=64", "batch_size"),  # too few clips for one batch
])
def test_data_errors_leave_nothing_behind(tiny_config, tmp_path, override, named):
    from flashdepth.train import fit

    out = tmp_path / "run"
    config = load_train_config(tiny_config, [f"out_dir={out}", override.format(missing=tmp_path / "nowhere")])
    with pytest.raises(flashdepth.ConfigError, match=named):
        fit(config)
    assert not out.exists()  # no train_config.json, no checkpoint


def test_training_choices_are_tables_read_by_check_and_dispatch(monkeypatch, toy_data):
    """A row added to a choice table is accepted by the config check and acted on by the code that
    dispatches on it, with no other change; an unknown name lists the valid ones."""
    from flashdepth.train import choices, warmup_schedule
    from flashdepth.train.config import DataConfig, OptimConfig, TrainConfig

    for key, bad, table in (("loss", TrainConfig(loss="l2"), choices.LOSSES),
                            ("data.crop", TrainConfig(data=DataConfig(crop="corner")), choices.CROPS),
                            ("optim.schedule", TrainConfig(optim=OptimConfig(schedule="linear")), choices.SCHEDULES),
                            ("precision", TrainConfig(precision="fp8"), choices.PRECISIONS)):
        with pytest.raises(flashdepth.ConfigError, match=key) as info:
            bad.validate()
        assert all(name in str(info.value) for name in table)

    # loss: a probe row whose alignment doubles the prediction
    monkeypatch.setitem(choices.LOSSES, "double", choices.Loss("double", "probe", lambda p, g, v: 2 * p))
    TrainConfig(loss="double").validate()

    target = torch.full((1, 1, 2, 2), 0.01)  # x100 = 1
    assert DepthLoss(Fixed(torch.full((1, 1, 2, 2), 3.0)), "double")(None, target).item() == pytest.approx(5.0)  # |2 * 3 - 1|
    # schedule: a probe row that halves the rate after warm-up
    monkeypatch.setitem(choices.SCHEDULES, "half", choices.Schedule("half", "probe", lambda progress: 0.5))
    TrainConfig(optim=OptimConfig(schedule="half")).validate()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_schedule(optimizer, 1, "half", 10)
    optimizer.step()
    schedule.step()
    assert optimizer.param_groups[0]["lr"] == 0.5
    # crop: a probe row that takes the top-left corner of the frame at its own size
    monkeypatch.setitem(choices.CROPS, "corner", choices.Crop("corner", "probe", lambda h, w, th, tw, rng: ((h, w), (0, 0))))
    TrainConfig(data=DataConfig(crop="corner")).validate()
    corner = ClipDataset.from_folder(toy_data / "toy", "train", stride=1, clip_length=3, crop="corner", crop_size=(56, 70))
    full = ClipDataset.from_folder(toy_data / "toy", "train", stride=1, clip_length=3, crop="center", crop_size=(70, 98))
    assert torch.equal(corner[0][1], full[0][1][:, :56, :70])  # the same frames, cut at (0, 0)


def test_exactly_the_unused_parameters_are_frozen_by_design():
    """Autograd is the oracle: with nothing frozen, the parameters one backward leaves without a
    gradient are exactly frozen_by_design's; so with the teacher unfrozen, every trainable
    parameter gets a gradient (DDP's unused-parameter error cannot happen)."""
    from flashdepth.train import frozen_by_design
    from flashdepth.train.setup import apply_freezing

    model = randomize(FlashDepth(TINY["full"]), seed=0)
    model.requires_grad_(True)
    model.train()
    video = torch.randn(1, 2, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    target = torch.rand(1, 2, 56, 70, generator=torch.Generator().manual_seed(1)) * 0.1 + 0.01
    DepthLoss(model)(video, target).backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    assert unused == set(frozen_by_design(model))
    assert any(n.startswith("teacher_model.depth_head.") for n in unused)  # the teacher's unused levels
    model.zero_grad(set_to_none=True)
    apply_freezing(model, ())  # the teacher itself is trained too
    DepthLoss(model)(video, target).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing and any(p.requires_grad for n, p in model.named_parameters() if n.startswith("teacher_model."))


def test_validation_is_sharded_over_ranks_and_reduced(tiny_config, monkeypatch):
    """Two ranks (threads sharing an all-reduce) each score their own sequences, never wait at a
    barrier, and both get the means a single process gets."""
    import threading

    import flashdepth.apps.evaluate
    from flashdepth.train import World, validate

    config = load_train_config(tiny_config, ["data.val_split=train", "data.val_max_frames=2"])
    model = flashdepth.load_model(config.init)
    real, seen = flashdepth.apps.evaluate.evaluate_sequence, {0: [], 1: []}
    rank_of = threading.local()

    def recording(session, seq, opts):
        seen[rank_of.rank].append(seq.path.name)
        return real(session, seq, opts)

    monkeypatch.setattr(flashdepth.apps.evaluate, "evaluate_sequence", recording)
    rank_of.rank = 0
    alone = validate(model, config, World(), torch.device("cpu"), "fp32", 1, log=lambda m: None)
    seen[0].clear()
    meeting, parts, barriers = threading.Barrier(2), {}, []

    def all_reduce(tensor):
        parts[rank_of.rank] = tensor.clone()
        meeting.wait()
        tensor.copy_(parts[0] + parts[1])
        meeting.wait()

    results = {}

    def rank(r):
        rank_of.rank = r
        copy = flashdepth.load_model(config.init)
        world = World(rank=r, size=2, all_reduce=all_reduce, barrier=lambda: barriers.append(r), wrap=lambda m: m)
        results[r] = validate(copy, config, world, torch.device("cpu"), "fp32", 1, log=lambda m: None)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])  # disjoint shares ...
    assert sorted(seen[0] + seen[1]) == ["seq0", "seq1", "seq2"]  # ... covering every sequence
    assert not barriers
    for r in (0, 1):
        assert results[r]["toy"]["sequences"] == 3
        assert results[r]["toy"]["abs_rel"] == pytest.approx(alone["toy"]["abs_rel"], rel=1e-5)
        assert results[r]["toy"]["delta1"] == pytest.approx(alone["toy"]["delta1"], rel=1e-5)


def _guarded_run(fused: bool):
    from flashdepth.train import build_optimizer, warmup_schedule
    from flashdepth.train.config import OptimConfig, TrainConfig
    from flashdepth.train.loop import GuardedStep, TrainRun

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.depth_head = torch.nn.Linear(4, 1)  # one parameter group ("depth_head.")
    config = TrainConfig(optim=OptimConfig(lr_dpt=0.1, warmup_steps=0, grad_clip=1.0))
    optimizer = build_optimizer(model, config, fused=fused)
    run = TrainRun(model, optimizer, warmup_schedule(optimizer, 0), 0, [])
    return model, GuardedStep(run, config)


def _step_loss(model, kind: str):
    x = torch.linspace(-1, 1, 8).reshape(2, 4)
    loss = model.depth_head(x).square().mean()
    if kind == "nan loss":
        return loss * float("nan")
    if kind == "nan gradient":  # a finite loss whose gradient is not: d sqrt(z) / dz at z = 0
        w = model.depth_head.weight
        return loss + 0.0 * torch.sqrt((w - w.detach()).sum())
    return loss


def test_guarded_step_skips_on_a_device_flag_like_the_host_checked_reference(monkeypatch, capsys):
    """The fused path skips non-finite steps from a flag the optimizer's kernel reads (no host
    sync per step); the reference reads the flag on the host. Same decisions, same weights,
    the same report, made once per logging interval."""
    kinds = ["ok", "nan loss", "nan gradient", "ok"]
    results = {}
    for fused in (True, False):
        model, step = _guarded_run(fused)
        assert step.on_device == fused
        history = []
        for i, kind in enumerate(kinds):
            before = [p.detach().clone() for p in model.parameters()]
            loss = _step_loss(model, kind)
            if fused:  # nothing in the step may wait for the device
                def no_sync(*args, **kwargs):
                    raise AssertionError("host sync inside a step")

                with monkeypatch.context() as m:
                    for name in ("item", "tolist", "__bool__", "cpu"):
                        m.setattr(torch.Tensor, name, no_sync)
                    step(loss, i)
            else:
                step(loss, i)
            changed = any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
            history.append(changed)
        steps_taken = {float(s["step"]) for s in step.run.optimizer.state.values()}
        results[fused] = (history, step.report(), [p.detach().clone() for p in model.parameters()], steps_taken)
    err = capsys.readouterr().err
    for fused in (True, False):
        history, skipped, _, steps_taken = results[fused]
        assert history == [True, False, False, True]  # a skipped step leaves the weights as they were
        assert skipped == [1, 2] and steps_taken == {2.0}  # and does not count as an Adam step
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results[True][2], results[False][2]))
    assert err.count("step 1 skipped: non-finite loss") == 2 and err.count("step 2 skipped: non-finite gradient") == 2


def test_batches_are_pinned_for_cuda_only(tiny_config, monkeypatch):
    """Pinned batches let the copy to a CUDA device overlap (non_blocking); elsewhere they would only cost."""
    import types

    import flashdepth.train.loop as loop

    class Stop(Exception):
        pass

    seen = []

    def fake_sources(config, world, input_config, pin_memory):
        seen.append(pin_memory)
        raise Stop

    fake_run = types.SimpleNamespace(model=types.SimpleNamespace(config=types.SimpleNamespace(input=None)))
    monkeypatch.setattr(loop, "build_run", lambda *a, **k: fake_run)
    monkeypatch.setattr(loop, "_train_sources", fake_sources)
    config = load_train_config(tiny_config)
    for device in ("cuda", "cpu", "mps"):
        monkeypatch.setattr(loop, "resolve_device", lambda requested, device=device: torch.device(device))
        with pytest.raises(Stop):
            loop.fit(config)
    assert seen == [True, False, False]
