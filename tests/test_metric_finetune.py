"""Fine-tuning to metres: the metric head on FlashDepth, the SILog loss, the head's initialisation
from a relative model, and the recipe configs/finetune-metric.toml."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth import FlashDepth
from flashdepth.errors import ConfigError
from flashdepth.inference.weights import bundled_weights, save_checkpoint
from flashdepth.train import DepthLoss, build_model, load_train_config, metric_head_from_relative
from flashdepth.train.config import TrainConfig
from flashdepth.train.setup import METRIC_HEAD_FIT, metric_head_fit

from conftest import TINY, randomize

HERE = Path(__file__).parent
RECIPE = HERE.parent / "configs" / "finetune-metric.toml"


class Fixed(torch.nn.Module):
    """A stand-in model whose prediction is given (with a config, so the loss checks its unit)."""

    def __init__(self, out, config):
        super().__init__()
        self.out, self.config = out, config

    def forward_sequence(self, video):
        return self.out, None


def numpy_silog(pred, depth, valid, lambd=0.5):
    """Depth Anything V2's SiLogLoss written out in NumPy, float64."""
    d = np.log(depth[valid].astype(np.float64)) - np.log(pred[valid].astype(np.float64))
    return float(np.sqrt(np.mean(d ** 2) - lambd * np.mean(d) ** 2))


def test_silog_loss_is_the_official_formula_on_valid_pixels_within_the_cap():
    rng = np.random.default_rng(0)
    cap = 20.0
    depth = rng.uniform(0.5, 30.0, (2, 3, 9, 11)).astype(np.float32)  # metres, some beyond the cap
    target = 1.0 / depth  # the training target: inverse depth in 1/m
    target[0, 0, :2] = 0.0  # sky
    target[1, 2, -2:] = -1.0  # invalid
    target[0, 1, 3, 3] = 1.0 / 5e-4  # nearer than Depth Anything V2's min_depth 1e-3 m
    pred = (depth * rng.uniform(0.6, 1.5, depth.shape)).astype(np.float32)  # (B, T, H, W) metres
    valid = (target > 0) & (1.0 / np.where(target > 0, target, 1.0) <= cap) & (target <= 1e3)
    assert 0 < valid.sum() < valid.size - 10  # the mask really removes sky, invalid, far and too-near pixels

    config = TINY["s"].with_metric_head(cap)
    loss = DepthLoss(Fixed(torch.from_numpy(pred), config), "silog")(None, torch.from_numpy(target))
    assert loss.item() == pytest.approx(numpy_silog(pred, depth, valid), rel=1e-5)
    # known answers: a prediction off by a global factor k costs sqrt(1 - 0.5) |ln k|; an exact one 0
    scaled = torch.from_numpy(2.0 * depth)
    assert DepthLoss(Fixed(scaled, config), "silog")(None, torch.from_numpy(target)).item() == pytest.approx(
        np.sqrt(0.5) * np.log(2.0), rel=1e-5)
    exact = DepthLoss(Fixed(torch.from_numpy(depth), config), "silog")(None, torch.from_numpy(target))
    assert exact.item() < 1e-5


def test_silog_gradient_is_finite_for_an_exact_or_zero_prediction():
    config = TINY["s"].with_metric_head(10.0)
    depth = torch.full((1, 1, 4, 4), 2.0)
    for start in (depth.clone(), torch.zeros_like(depth)):  # sqrt at 0; a sigmoid head underflowed to 0 m
        pred = start.requires_grad_(True)
        DepthLoss(Fixed(pred, config), "silog")(None, 1.0 / depth).backward()
        assert torch.isfinite(pred.grad).all()


def test_the_loss_row_and_the_model_unit_must_agree():
    with pytest.raises(ConfigError, match="metric_head"):
        TrainConfig(loss="silog").validate()  # flashdepth-s has a relative head
    with pytest.raises(ConfigError, match="silog"):
        TrainConfig(loss="l1", metric_head=20.0).validate()
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="metric_head"):
            TrainConfig(loss="silog", metric_head=bad).validate()
    config = TrainConfig(loss="silog", metric_head=20.0).validate()
    assert config.model_to_train().unit.name == "metric-depth" and config.model_to_train().dpt.max_depth == 20.0
    # the same check where the loss is built (a resumed model brings its own head)
    with pytest.raises(ConfigError, match="metric"):
        DepthLoss(FlashDepth(TINY["s"]), "silog")
    with pytest.raises(ConfigError, match="relative-inverse-depth"):
        DepthLoss(FlashDepth(TINY["s"].with_metric_head(20.0)), "l1")


def test_flashdepth_with_a_metric_head_streams_saves_its_config_and_reloads(tmp_path):
    config = TINY["s"].with_metric_head(20.0)
    assert config.unit.name == "metric-depth" and config.name == "tiny-s+metric20m"
    assert config.with_metric_head(0.0) == TINY["s"]  # the relative head back, under its own name
    model = randomize(FlashDepth(config), seed=3).eval()
    video = torch.randn(2, 3, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unrolled, _ = model.forward_sequence(video)  # (B, T, H, W)
        state, steps = None, []
        for t in range(3):
            depth, state = model(video[:, t], state)
            steps.append(depth)
    streamed = torch.stack(steps, 1)
    assert torch.allclose(streamed, unrolled, rtol=1e-5, atol=1e-5)
    assert (unrolled > 0).all() and (unrolled < 20.0).all() and unrolled.std() > 0  # sigmoid x 20 m
    assert state.frames == 3

    path = save_checkpoint(model, tmp_path / "metric.pth")
    loaded = flashdepth.load_model(path)
    assert loaded.config == config and loaded.config.unit.name == "metric-depth"
    with torch.no_grad():
        again, _ = loaded.forward_sequence(video)
    assert torch.equal(again, unrolled)
    safe = flashdepth.load_model(save_checkpoint(model, tmp_path / "metric.safetensors"))
    assert safe.config.unit.name == "metric-depth"


def test_metric_head_fit_maps_relative_output_to_a_decreasing_depth_near_100_over_r():
    for cap in (20.0, 80.0):
        c, alpha = metric_head_fit(cap)
        z = np.geomspace(METRIC_HEAD_FIT[0] * cap, METRIC_HEAD_FIT[1] * cap, 50)  # metres
        r = 100.0 / z  # what a relative model outputs for them (the x100 convention)
        start = cap / (1.0 + np.exp(-(c - alpha * r)))  # (50,) what the metric head starts at
        assert alpha > 0 and np.all(np.diff(start) > 0)  # farther stays farther
        err = np.abs(np.log(start / z))
        assert err.mean() < 0.4 and err.max() < 1.1


def test_metric_head_from_relative_keeps_the_network_and_refits_the_last_layer(tmp_path):
    relative = randomize(FlashDepth(TINY["s"]), seed=4).eval()
    with torch.no_grad():
        relative.depth_head.scratch.output_conv2[2].bias.fill_(2.0)  # mostly positive output, as a trained head
    init = save_checkpoint(relative, tmp_path / "relative.pth")
    recipe = TrainConfig(model_config=TINY["s"], init=str(init), loss="silog", metric_head=20.0)
    metric = build_model(recipe).eval()
    assert metric.config.unit.name == "metric-depth"
    last = "depth_head.scratch.output_conv2.2."
    before, after = relative.state_dict(), metric.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(last))

    video = torch.randn(1, 2, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        r, _ = relative.forward_sequence(video)  # (1, 2, H, W) relative output (after its ReLU)
        d, _ = metric.forward_sequence(video)  # (1, 2, H, W) metres
    c, alpha = metric_head_fit(20.0)
    r, d = r.numpy().astype(np.float64), d.numpy().astype(np.float64)
    positive = r > 0  # where the ReLU passed the layer's output through
    assert positive.mean() > 0.5
    expected = 20.0 / (1.0 + np.exp(-(c - alpha * r[positive])))
    np.testing.assert_allclose(d[positive], expected, rtol=1e-4)

    # a metric checkpoint keeps its head as it is
    again = build_model(TrainConfig(model_config=TINY["s"].with_metric_head(20.0),
                                    init=str(save_checkpoint(metric, tmp_path / "metric.pth")), loss="silog"))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in metric.state_dict().items())
    with pytest.raises(ConfigError, match="with_metric_head"):
        metric_head_from_relative(relative)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two short clips of the synthetic world (exact metric depth) in the sequence-folder format."""
    from flashdepth.data.synthetic import PRESETS, write_synthetic_dataset

    root = tmp_path_factory.mktemp("metric-data")
    write_synthetic_dataset(root, {"train": range(2), "val": range(100, 101)},
                            dataclasses.replace(PRESETS["varied"], frames=6), name="my-rgbd")
    return root


def test_the_recipe_fine_tunes_the_bundled_tiny_model_to_metres(rendered, tmp_path):
    """configs/finetune-metric.toml, as written, with only what a tiny CPU run needs overridden:
    the bundled model, small crops, 2 steps. The run writes checkpoints of a metric model that
    load and predict metres, and validates in metres."""
    out = tmp_path / "run"
    overrides = ["model=flashdepth-tiny-synthetic", f"init={bundled_weights('flashdepth-tiny-synthetic')}",
                 f"data.root={rendered}", "data.crop_size=[70, 126]", "data.clip_length=3", "data.num_workers=0",
                 "steps=2", "batch_size=1", "save_every=2", "val_every=2", "log_every=1", "data.val_max_frames=2",
                 "grad_checkpointing=false", f"out_dir={out}"]
    config = load_train_config(RECIPE, overrides)
    assert (config.loss, config.metric_head, config.init) == ("silog", 80.0, overrides[1][len("init="):])
    lines = []
    last = flashdepth.train.fit(config, log=lines.append)
    assert last == out / "step_0000002.pth"
    losses = [float(line.split()[3]) for line in lines if line.startswith("step ") and " loss " in line]
    assert len(losses) == 2 and all(0 < v < 5 for v in losses)  # SILog of a calibrated start: order 1
    assert any("val my-rgbd: AbsRel" in line for line in lines)
    model = flashdepth.load_model(last)
    assert model.config.unit.name == "metric-depth" and model.config.dpt.max_depth == 80.0
    assert model.config.name == "flashdepth-tiny-synthetic+metric80m"
    with torch.no_grad():
        depth, _ = model(torch.zeros(1, 3, 126, 224))
    assert ((depth > 0) & (depth < 80.0)).all()


def test_evaluation_reads_a_metric_model_as_metres(rendered):
    """A metric model's output is depth in metres, not the relative models' inverse depth x100:
    a FlashDepth whose metric head says 5 m everywhere is scored, with no alignment, as 5 m
    against the rendered ground truth (oracle: the metric protocol's AbsRel and delta1 in NumPy)."""
    from flashdepth.apps.evaluate import EvalOptions, evaluate_corpus
    from flashdepth.data.sequence import DatasetFolder

    model = FlashDepth(TINY["s"].with_metric_head(20.0)).eval()
    with torch.no_grad():
        last = model.depth_head.scratch.output_conv2[2]
        last.weight.zero_()
        last.bias.fill_(float(np.log(5.0 / 15.0)))  # sigmoid -> 5 / 20: 5 m
    sequences = DatasetFolder(rendered / "my-rgbd").sequences("val")
    row = evaluate_corpus(model, sequences, EvalOptions(alignment="none", max_frames=3)).rows[0]
    gt = np.stack([sequences[0].target(i) for i in range(3)]).astype(np.float64)  # (3, H, W) 1/m
    scored = (gt >= 1 / 70.0) & (gt <= 1e3)  # depth in [1 mm, 70 m]: the metric protocol's pixels
    depth = 1.0 / gt[scored]
    assert row["abs_rel"] == pytest.approx(np.mean(np.abs(5.0 - depth) / depth), rel=1e-4)
    assert row["delta1"] == pytest.approx(np.mean(np.maximum(5.0 / depth, depth / 5.0) < 1.25), abs=1e-6)
