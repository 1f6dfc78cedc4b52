"""Metric streams from relative models (flashdepth.metric): the robust fit, its smoothing, scene
cuts, the anchors file, and the issue's targets on a synthetic clip with exact metric depth."""

import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import flashdepth
from flashdepth.config import UNITS
from flashdepth.errors import AnchorsError, ConfigError, OptionValueError
from flashdepth.metric import (AlignedSession, AnchorReference, FitFilter, FitOptions, FitState, MetricFrom,
                               MetricModelReference, measurement_sums, read_anchors, solve, solve_nonnegative)
from flashdepth.inference.session import SessionSpec
from flashdepth.metrics import depth_metrics

from conftest import TINY, randomize, spread_depth

FRAMES = 24  # the demo's clip (seed 4242, preset scale-ambiguous) at the renderer's default length
CAP = 80.0  # the stand-in metric model's depth cap, metres (as the outdoor DAv2 metric rows)


# ----------------------------------------------------------------------------- the fit
def test_one_measurement_recovers_scale_and_shift_through_outliers_and_sky():
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 20.0, 5000)  # relative inverse depth
    s, t = 0.013, 0.004
    y = s * x + t  # 1/m, exact
    bad = rng.random(x.size) < 0.2  # a fifth of the pixels wrong by a factor of 1.5 to 3
    y[bad] *= rng.uniform(1.5, 3.0, bad.sum())
    sums = measurement_sums(x, y)
    fit = solve(sums)
    assert fit == pytest.approx((s, t), rel=1e-6)
    assert sums[2] == pytest.approx(1.0)  # normalised: every measurement weighs the same
    plain = solve(np.array([x @ x, x.sum(), x.size, x @ y, y.sum()]))  # no rejection: pulled off by the outliers
    assert abs(plain[0] / s - 1) > 0.1
    assert measurement_sums(x[:5], y[:5]) is None  # too few points: no measurement
    assert measurement_sums(x, -y) is None  # no positive depth
    flat = solve_nonnegative(measurement_sums(x, 0.05 - 0.001 * x))  # ordered against the measurements: scale 0, flat depth
    assert flat[0] == 0.0 and 0.03 < flat[1] < 0.05


def test_the_filter_is_least_squares_over_all_measurements_discounted_by_age():
    rng = np.random.default_rng(1)
    options = FitOptions(half_life=1.5, rejection=50.0)  # no outliers here: plain weighted least squares
    state = FitState(0.01)
    xs, ys = [], []
    for k in range(4):
        x = rng.uniform(1.0, 20.0, 300)
        y = (0.01 + 0.001 * k) * x + 0.002 * k + rng.normal(0, 1e-4, x.size)
        xs.append(x)
        ys.append(y)
        state = FitFilter(options).update(state, measurement_sums(x, y, options))
    # The oracle: one weighted least squares over every pixel, each measurement normalised to unit
    # weight (pixel weight 1/y) and discounted by decay ** age.
    rows, rhs = [], []
    for k, (x, y) in enumerate(zip(xs, ys)):
        w = (1.0 / y) / (1.0 / y).sum() * options.decay ** (len(xs) - 1 - k)
        rows.append(np.sqrt(w)[:, None] * np.stack([x, np.ones_like(x)], axis=1))
        rhs.append(np.sqrt(w) * y)
    expected = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)[0]
    assert (state.scale, state.shift) == pytest.approx(tuple(expected), rel=1e-6)
    assert state.measurements == 4


def test_metric_from_parses_model_and_every():
    assert MetricFrom.parse("depth-anything-v2-metric-indoor-small:5") == MetricFrom("depth-anything-v2-metric-indoor-small", 5)
    assert MetricFrom.parse("depth-anything-v2-metric-indoor-small").every == 1
    assert MetricFrom.parse("C:/weights/metric.pth") == MetricFrom("C:/weights/metric.pth", 1)
    with pytest.raises(OptionValueError, match="EVERY"):
        MetricFrom.parse("depth-anything-v2-metric-indoor-small:0")
    with pytest.raises(ConfigError, match="one of them"):
        SessionSpec(metric_from="m", anchors="a.csv")


# ------------------------------------------------------------------- stand-in sessions
class _Frames:
    """A stand-in session whose "frame" is an index into precomputed maps (relative or metric)."""

    def __init__(self, maps, unit, cap=0.0):
        self.maps, self.unit = maps, UNITS[unit]
        self.config = SimpleNamespace(name=f"stand-in {unit}", unit=self.unit, dpt=SimpleNamespace(max_depth=cap))
        self.resets = 0

    def step(self, i):
        return self.maps[i]

    def reset(self, size=None):
        self.resets += 1


def _inverse(depth):
    return np.where(np.isfinite(depth), 1.0 / depth, 0.0)  # 1/m, sky 0


@pytest.fixture(scope="module")
def clip():
    """A rendered clip with exact depth, the bundled tiny model's prediction on it, and a copy of
    the exact inverse depth distorted by a known drifting scale and shift (x100, as published models)."""
    from flashdepth.data.synthetic import PRESETS, render_clip
    from flashdepth.inference.session import DepthSession

    frames = list(render_clip(4242, dataclasses.replace(PRESETS["scale-ambiguous"], frames=FRAMES)))  # the demo's clip
    depth = np.stack([f.depth for f in frames])  # (T, H, W) metres, inf = sky
    session = DepthSession(flashdepth.load_model("flashdepth-tiny-synthetic"), device="cpu")
    tiny = np.stack([session.step(f.rgb) for f in frames])  # (T, H, W) relative inverse depth
    t = np.arange(len(frames))[:, None, None]
    scale = 100.0 * (1.0 + 0.15 * np.sin(2 * np.pi * t / len(frames)))  # +-15 % over the clip
    shift = 1.0 + np.sin(2 * np.pi * t / len(frames) + 1.0)  # 0 to 2 (x100: 0 to 0.02 1/m)
    drifted = scale * _inverse(depth) + shift
    rng = np.random.default_rng(7)
    flicker = 1.0 + 0.05 * rng.standard_normal((len(frames), 1, 1))  # a metric model's per-frame scale error
    metric = np.minimum(depth * (1.0 + 0.05 * rng.standard_normal(depth.shape)) * flicker, CAP)  # sky at the cap
    return SimpleNamespace(depth=depth, inverse=_inverse(depth), tiny=tiny, drifted=drifted, metric=metric)


def _anchors_file(tmp_path, depth, fraction=0.01, noise=0.05, seed=3, kind="csv"):
    """1 % of each frame's pixels with a depth (not the sky), with 5 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for f, d in enumerate(depth):
        v, u = np.nonzero(np.isfinite(d))
        pick = rng.choice(v.size, size=int(fraction * d.size), replace=False)
        z = d[v[pick], u[pick]] * (1.0 + noise * rng.standard_normal(pick.size))
        rows.append(np.stack([np.full(pick.size, f), u[pick], v[pick], z], axis=1))
    table = np.concatenate(rows)
    path = tmp_path / f"anchors.{kind}"
    if kind == "csv":
        np.savetxt(path, table, delimiter=",", header="frame,u,v,depth", comments="", fmt=["%d", "%d", "%d", "%.6f"])
    else:
        np.savez(path, frame=table[:, 0].astype(int), u=table[:, 1], v=table[:, 2], depth=table[:, 3])
    return path


def _scores(relative, metres, clip):
    aligned = depth_metrics(1.0 / metres, clip.inverse, alignment="none")  # metres as they are: no alignment
    best = depth_metrics(relative, clip.inverse, alignment="scale-shift")  # the best per-sequence alignment
    return aligned, best


# The drifted stream's scale moves up to 2.5 % a frame: measured every 3rd frame the fit lags it,
# and scale_std is only just below the relative stream's (docs/metric.md has the figures).
CASES = [("tiny", "metric", 1), ("tiny", "metric", 3), ("drifted", "metric", 1), ("drifted", "metric", 3),
         ("tiny", "anchors", None), ("drifted", "anchors", None)]


@pytest.mark.parametrize("stream,source,every", CASES, ids=[f"{a}-{b}{'-every' + str(c) if c else ''}" for a, b, c in CASES])
def test_aligned_stream_meets_the_issues_targets_on_exact_synthetic_depth(clip, tmp_path, stream, source, every):
    relative = getattr(clip, stream)
    if source == "metric":  # stand-in metric model: the true depth with 5 % pixel noise and 5 % per-frame flicker
        reference = MetricModelReference(_Frames(clip.metric, "metric-depth", CAP), every=every)
    else:
        reference = AnchorReference(read_anchors(_anchors_file(tmp_path, clip.depth)))
    session = AlignedSession(_Frames(relative, "relative-inverse-depth"), reference)
    assert session.unit is UNITS["metric-depth"]
    metres = np.stack([session.step(i) for i in range(len(relative))])  # (T, H, W)
    assert metres.dtype == np.float32 and np.all(metres > 0) and np.all(metres <= reference.max_depth)
    aligned, best = _scores(relative, metres, clip)
    print(f"{stream} {source} every={every}: AbsRel in metres {aligned['abs_rel']:.4f} (best per-sequence "
          f"alignment of the relative stream {best['abs_rel']:.4f}), delta1 {aligned['delta1']:.3f}, "
          f"scale_std {aligned['scale_std']:.4f} (relative {best['scale_std']:.4f})")
    assert aligned["abs_rel"] <= 1.10 * best["abs_rel"]
    assert aligned["scale_std"] <= best["scale_std"]


def test_smoothing_keeps_a_flickering_reference_from_making_a_steady_stream_flicker(clip):
    """The relative stream is exact (no drift); the reference's scale flickers 10 % per frame. The
    smoothed fit flickers less than a fit that follows each measurement alone."""
    rng = np.random.default_rng(11)
    flicker = 1.0 + 0.10 * rng.standard_normal((FRAMES, 1, 1))
    metric = np.minimum(clip.depth * flicker, CAP)
    steady = 100.0 * clip.inverse

    def scale_std(options):
        reference = MetricModelReference(_Frames(metric, "metric-depth", CAP), every=1, options=options)
        session = AlignedSession(_Frames(steady, "relative-inverse-depth"), reference, options)
        metres = np.stack([session.step(i) for i in range(FRAMES)])
        return depth_metrics(1.0 / metres, clip.inverse, alignment="none")["scale_std"]

    smoothed, alone = scale_std(FitOptions()), scale_std(FitOptions(half_life=1e-3))
    print(f"scale_std with a 10 % flickering reference: smoothed {smoothed:.4f}, each measurement alone {alone:.4f}")
    assert smoothed < 0.8 * alone
    assert scale_std(FitOptions(half_life=4.0)) < smoothed  # a longer memory smooths more


def test_the_fit_holds_between_measurements_so_relative_consistency_is_kept(clip):
    reference = MetricModelReference(_Frames(clip.metric, "metric-depth", CAP), every=6)
    session = AlignedSession(_Frames(clip.tiny, "relative-inverse-depth"), reference)
    for i in range(12):
        session.step(i)
    fits = np.array(session.fits)  # (frame, scale, shift)
    for start in (0, 6):
        block = fits[start:start + 6, 1:]
        assert np.all(block == block[0])  # one fit from a measurement to the next
    assert not np.all(fits[6, 1:] == fits[5, 1:])  # it moves at a measurement


def test_a_scene_cut_resets_the_fit_and_measures_the_next_frame(clip):
    """Two shots of the same clip whose relative scale differs 3x: measured only at a stream's start
    and at cuts (every=1000), the second shot is right in metres only if the cut reset the fit."""
    relative = np.concatenate([100.0 * clip.inverse[:6], 300.0 * clip.inverse[6:12]])
    truth = np.minimum(clip.depth[:12], CAP)

    def run(cut):
        metric = _Frames(truth, "metric-depth", CAP)
        session = AlignedSession(_Frames(relative, "relative-inverse-depth"), MetricModelReference(metric, every=1000))
        out = []
        for i in range(12):
            if cut and i == 6:
                session.cut()
            out.append(session.step(i))
        return np.stack(out), metric

    (with_cut, metric), (without, _) = run(True), run(False)
    sky = ~np.isfinite(clip.depth[6:12])
    err = lambda m: np.median(np.abs(m[6:][~sky] / truth[6:][~sky] - 1))
    assert err(with_cut) < 0.01 and err(without) > 0.5
    assert metric.resets == 1  # the metric model's stream restarted at the cut too


# ------------------------------------------------------------------------- anchors file
def test_anchors_read_from_csv_and_npz_alike(clip, tmp_path):
    a = read_anchors(_anchors_file(tmp_path, clip.depth[:3], kind="csv"))
    b = read_anchors(_anchors_file(tmp_path, clip.depth[:3], kind="npz"))
    assert a.frames == b.frames == [0, 1, 2] and len(a) == len(b) == 3 * int(0.01 * clip.depth[0].size)
    for f in a.frames:
        for x, y in zip(a.at(f), b.at(f)):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    assert a.at(5) is None


@pytest.mark.parametrize("text,message", [
    ("frame,u,v\n0,1,1\n", "missing column(s) depth"),
    ("frame,u,v,depth,weight\n0,1,1,2,1\n", "unknown column(s) weight"),
    ("frame,u,v,depth\n0,1,1,0\n", "depth=0 is not a depth"),
    ("frame,u,v,depth\n0,1,1,-2\n", "depth=-2 is not a depth"),
    ("frame,u,v,depth\n1.5,1,1,2\n", "frame=1.5 is not a frame index"),
    ("frame,u,v,depth\n-1,1,1,2\n", "frame=-1 is not a frame index"),
    ("frame,u,v,depth\n0,1,x,2\n", "v='x' is not a number"),
    ("frame,u,v,depth\n", "no anchors"),
    ("", "is empty"),
])
def test_anchors_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "a.csv"
    path.write_text(text)
    with pytest.raises(AnchorsError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        read_anchors(path)
    assert str(path) in str(e.value)


def test_anchors_outside_the_image_or_the_stream_are_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("frame,u,v,depth\n0,10,5,2.0\n3,64,5,2.0\n")
    anchors = read_anchors(path)
    with pytest.raises(AnchorsError, match="u=64, v=5 is outside the 64x48 frames"):
        AlignedSession(_Frames([np.ones((48, 64))] * 4, "relative-inverse-depth"), AnchorReference(anchors)).step(0)
    with pytest.raises(AnchorsError, match=r"frame\(s\) 3 are unknown: the stream has 2 frame"):
        anchors.check_frames(2)
    with pytest.raises(AnchorsError, match="extension '.txt'"):
        (tmp_path / "a.txt").write_text("frame,u,v,depth\n")
        read_anchors(tmp_path / "a.txt")
    with pytest.raises(AnchorsError, match="does not exist"):
        read_anchors(tmp_path / "missing.csv")


def test_a_reference_must_be_a_metric_model():
    with pytest.raises(ConfigError, match="needs a metric model"):
        MetricModelReference(_Frames([], "relative-inverse-depth"))


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from flashdepth.inference.weights import save_checkpoint

    folder = tmp_path_factory.mktemp("metric-ckpt")
    relative = spread_depth(randomize(flashdepth.FlashDepth(TINY["s"]), seed=11)).eval()
    config = TINY["dav2"].replace(name="tiny-metric", dpt=dataclasses.replace(TINY["dav2"].dpt, max_depth=20.0))
    metric = randomize(flashdepth.FlashDepth(config), seed=5).eval()  # a tiny metric row (sigmoid x 20 m)
    return save_checkpoint(relative, folder / "relative.pth"), save_checkpoint(metric, folder / "metric.pth")


def test_run_metric_from_writes_metres_and_says_so(tmp_path, checkpoints):
    from media import make_frames
    from PIL import Image

    relative, metric = checkpoints
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(make_frames(4, 56, 84)):
        Image.fromarray(image).save(frames / f"{i:03d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "flashdepth_cli", "run", str(frames), "-o", str(out), "--checkpoint", str(relative),
           "--metric-from", f"{metric}:2", "--save", "raw", "--device", "cpu", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "depth.json").read_text())
    assert meta["unit"]["name"] == "metric-depth" and meta["unit"]["metres"].startswith("exact")
    assert "every 2 frame(s)" in meta["notes"][0]
    depth = np.load(out / "depth.npy")
    assert depth.shape == (4, 56, 84) and np.all(depth > 0) and np.all(depth <= 20.0)

    late = tmp_path / "late.csv"
    late.write_text("frame,u,v,depth\n0,1,1,2.0\n9,1,1,2.0\n")
    cmd[cmd.index("--metric-from"):cmd.index("--metric-from") + 2] = ["--anchors", str(late)]
    done = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr  # refused before any frame: the input has 4 frames
    assert f"--anchors {late}: frame(s) 9 are unknown: the stream has 4 frame(s)" in done.stderr


def test_bench_times_metric_from_side_by_side_and_runs_the_metric_model_every_n_frames():
    from flashdepth.apps.bench import BenchCase, bench_metric_from, metric_summary

    relative = randomize(flashdepth.FlashDepth(TINY["s"]), seed=2)
    config = TINY["dav2"].replace(name="tiny-metric", dpt=dataclasses.replace(TINY["dav2"].dpt, max_depth=20.0))
    metric = randomize(flashdepth.FlashDepth(config), seed=4)
    calls = {"relative": 0, "metric": 0}
    relative.register_forward_hook(lambda *a: calls.__setitem__("relative", calls["relative"] + 1))
    metric.register_forward_hook(lambda *a: calls.__setitem__("metric", calls["metric"] + 1))
    record = bench_metric_from(BenchCase("tiny-s", (56, 84)), "tiny-metric:3", frames=6, warmup=0,
                               models=(relative, metric))
    assert calls == {"relative": 12, "metric": 2}  # both streams every frame; the metric model on frames 0 and 3
    assert record["frames"] == 6 and record["every"] == 3 and record["metric_model"] == "tiny-metric"
    assert record["added_ms_per_frame"] == pytest.approx(record["aligned_mean_ms"] - record["relative_mean_ms"])
    assert record["metric_runs"] == 2 and 0 < record["metric_run_ms"] < record["aligned_max_ms"]
    assert "| tiny-s | 56x84 | tiny-metric | 3 |" in metric_summary([record])


def test_batch_takes_metric_from_with_its_checkpoint_made_absolute_and_refuses_anchors(tmp_path, capsys, monkeypatch):
    from flashdepth.batch import BatchJob
    from flashdepth_cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metric.pth").write_bytes(b"")
    job = BatchJob(inputs=("a.mp4",), outroot="out", session=SessionSpec(metric_from="metric.pth:4"))
    assert job.session.metric_from == f"{tmp_path / 'metric.pth'}:4"  # workers need not share our folder
    named = BatchJob(inputs=("a.mp4",), outroot="out",
                     session=SessionSpec(metric_from="depth-anything-v2-metric-indoor-small:4"))
    assert named.session.metric_from == "depth-anything-v2-metric-indoor-small:4"
    assert main(["batch", "a.mp4", "-o", "out", "--anchors", "a.csv"]) == 2
    assert "--anchors a.csv: anchors belong to one input's frames" in capsys.readouterr().err


def test_the_pipeline_cuts_an_aligned_stream_without_restarting_its_frame_count(clip):
    from flashdepth.apps.pipeline import StreamRun
    from flashdepth.io.sources import Frame, Source

    class Counting(_Frames):  # takes images, as in a run: the maps are handed out in call order
        calls = 0

        def step(self, image):
            self.calls += 1
            return self.maps[self.calls - 1]

    class Shots(Source):  # 4 dark frames, then 4 bright ones: one shot cut
        def __iter__(self):
            for i in range(8):
                yield Frame(np.full((126, 224, 3), 20 if i < 4 else 230, np.uint8), i, pts=i)

    relative = Counting(100.0 * clip.inverse[:8], "relative-inverse-depth")
    metric = Counting(np.minimum(clip.depth[:8], CAP), "metric-depth", CAP)
    session = AlignedSession(relative, MetricModelReference(metric, every=1000))
    stats = StreamRun(Shots(), session, [], reset_on_cut=True).run()
    assert stats.frames == 8 and stats.resets == 1
    assert relative.resets == 1 and metric.calls == 2  # measured at the start and right after the cut
    assert session.frames == 8 and session.since_cut == 4  # anchors' frame indices go on across the cut
