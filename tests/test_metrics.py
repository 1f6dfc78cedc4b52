"""Metrics on cases with known answers, and against a direct statement of the published protocol."""

import numpy as np
import pytest

from flashdepth.metrics import (METRICS, SequenceAccumulator, align_scale_shift, boundary_f1, depth_metrics,
                                scale_std, tae)


def assert_same_scores(scored: dict, direct: dict) -> None:
    """The accumulator's record equals the direct formulas' on every key (to rounding)."""
    assert set(scored) == set(direct) == set(METRICS) | {"scale", "shift", "valid_pixels"}
    for key, value in direct.items():
        if value is None or isinstance(value, int):
            assert scored[key] == value, key
        else:
            assert scored[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


def protocol_metrics(pred, gt, max_depth=70.0):
    """The published metric, written out directly: one lstsq fit per sequence over gt >= 1/max_depth
    (np.linalg.lstsq), inversion with clip 1e-3, depth clip [1e-3, max_depth], averages over gt >= 0."""
    valid = gt >= 0
    fit = gt >= 1 / max_depth
    A = np.stack([pred[fit], np.ones(fit.sum())], axis=1)
    (s, t), *_ = np.linalg.lstsq(A, gt[fit], rcond=None)
    aligned = s * pred + t
    pd = np.clip(1 / np.clip(aligned, 1e-3, None), 1e-3, max_depth)[valid]
    gd = np.clip(1 / np.clip(gt, 1e-3, None), 1e-3, max_depth)[valid]
    return np.mean(np.abs(pd - gd) / gd), np.mean(np.maximum(pd / gd, gd / pd) < 1.25)


def protocol_boundary_f1(pred, gt):
    """Depth Pro's SI boundary F1, written out directly."""
    ts = np.linspace(1.05, 1.25, 10)
    total = 0.0
    for t in ts:
        def rel(d):
            return [d[:, :-1] / d[:, 1:] > t, d[:-1, :] / d[1:, :] > t, d[:, 1:] / d[:, :-1] > t, d[1:, :] / d[:-1, :] > t]
        r = np.mean([np.sum(p & g) / max(g.sum(), 1) for p, g in zip(rel(pred), rel(gt))])
        p = np.mean([np.sum(p & g) / max(p.sum(), 1) for p, g in zip(rel(pred), rel(gt))])
        total += (0.0 if r + p == 0 else 2 * r * p / (r + p)) * t / ts.sum()
    return total


def scene(t=4, h=20, w=24, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.02, 1.0, size=(t, h, w))
    gt[:, :3, :] = 0.0  # sky
    gt[:, -2:, :5] = -1.0  # invalid
    return gt


def test_perfect_up_to_scale_and_shift():
    gt = scene()
    pred = np.where(gt >= 0, 3.0 * gt + 0.5, 7.0)  # garbage where gt is invalid
    pred[:, :3, :] = 0.5  # sky predicted as the shift: aligned to 0, i.e. depth clipped to max
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-9) and m["delta1"] == 1.0
    assert m["scale"] == pytest.approx(1 / 3) and m["shift"] == pytest.approx(-0.5 / 3)
    depth = 1 / np.clip(gt[0], 1e-3, None)
    assert boundary_f1(depth * 2.0, depth) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_published_protocol(seed):
    rng = np.random.default_rng(seed)
    gt = scene(seed=seed)
    gt[:, 5:8, 5:9] = 1 / 100.0  # farther than max_depth: outside the fit, clipped in the metric
    pred = 50 * np.clip(gt, 0, None) + rng.normal(0, 3, gt.shape) + 10
    m = depth_metrics(pred, gt)
    abs_rel, delta1 = protocol_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(abs_rel, rel=1e-9) and m["delta1"] == pytest.approx(delta1, rel=1e-12)
    depth_p, depth_g = 1 / np.clip(pred[0], 1e-3, None), 1 / np.clip(gt[0], 1e-3, None)
    assert boundary_f1(depth_p, depth_g) == pytest.approx(protocol_boundary_f1(depth_p, depth_g), rel=1e-12)


def test_max_depth_is_configurable():
    gt = scene()
    pred = gt + np.random.default_rng(3).normal(0, 0.05, gt.shape)
    assert depth_metrics(pred, gt, max_depth=10.0)["abs_rel"] != depth_metrics(pred, gt, max_depth=70.0)["abs_rel"]
    a, d = protocol_metrics(pred, gt, max_depth=10.0)
    assert depth_metrics(pred, gt, max_depth=10.0)["abs_rel"] == pytest.approx(a, rel=1e-9)


def test_shifted_edge_lowers_f1_by_the_expected_amount():
    gt = np.ones((40, 40))
    gt[:, 20:] = 2.0  # one vertical step edge: 40 boundary pairs in one direction
    pred = np.ones((40, 40))
    pred[:, 21:] = 2.0  # the edge one pixel off: no pair coincides
    assert boundary_f1(pred, gt) == pytest.approx(0.0)
    half = gt.copy()
    half[20:, 20] = 1.0  # the lower half of the edge shifted: half the pairs match
    # One direction (right) has edges; recall 1/2 there, precision 1/2 -> per-direction averaging:
    # r = p = 0.25 * 0.5 (only one of four directions has boundaries) -> F1 = 0.125.
    assert boundary_f1(half, gt) == pytest.approx(0.125)
    assert boundary_f1(gt, gt) == pytest.approx(0.25)  # directions without boundaries count as 0 recall


def test_per_frame_scale_jitter_shows_in_scale_std():
    gt = scene(t=6)
    steady = np.where(gt >= 0, 2 * gt, 0)
    jitter = steady * np.array([1.0, 1.3, 0.8, 1.2, 0.9, 1.1])[:, None, None]
    assert scale_std(steady, gt) == pytest.approx(0.0, abs=1e-9)
    assert scale_std(jitter, gt) > 0.1
    # per-frame alignment hides the jitter in AbsRel; sequence alignment does not
    assert depth_metrics(jitter, gt, per_frame=True)["abs_rel"] < 1e-9 < depth_metrics(jitter, gt)["abs_rel"]


@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("spill", [True, False])
def test_accumulator_agrees_with_the_direct_formulas(tmp_path, spill, per_frame):
    """The bounded-memory accumulator against depth_metrics, which computes from the formulas
    directly: every key of the result, spilled or in memory, per sequence or per frame."""
    gt = scene(t=5)
    pred = gt * 4 + np.random.default_rng(1).normal(0, 0.1, gt.shape)
    pred *= np.array([1.0, 1.1, 0.9, 1.05, 1.0])[:, None, None]  # some scale drift for scale_std
    acc = SequenceAccumulator(spill=spill, spill_dir=str(tmp_path), per_frame=per_frame)
    for p, g in zip(pred, gt):
        acc.add(p, g)
    scored = acc.finish(lambda i: gt[i])
    direct = depth_metrics(pred.astype(np.float32) if spill else pred, gt, per_frame=per_frame)
    assert_same_scores(scored, direct)
    assert scored["boundary_f1"] is not None and scored["scale_std"] > 0.01


def test_depth_metrics_does_not_go_through_the_accumulator(monkeypatch):
    import flashdepth.metrics.scoring as scoring

    def refuse(*args, **kwargs):
        raise AssertionError("depth_metrics used the accumulator")

    monkeypatch.setattr(scoring.SequenceAccumulator, "__init__", refuse)
    gt = scene()
    assert depth_metrics(2 * gt + 1, gt)["abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_tae_zero_for_consistent_depth_and_positive_otherwise():
    h, w = 12, 16
    depth = np.full((3, h, w), 5.0)
    k = np.tile([10.0, 10.0, w / 2, h / 2], (3, 1))
    poses = np.stack([np.eye(4)] * 3)
    for i in range(3):
        poses[i, 0, 3] = 0.1 * i  # camera moves sideways in front of a fronto-parallel plane
    assert tae(depth, k, poses) == pytest.approx(0.0, abs=1e-12)
    wobbly = depth * np.array([1.0, 1.2, 1.0])[:, None, None]
    assert tae(wobbly, k, poses) > 0.1


def test_alignment_ignores_invalid_and_far():
    gt = np.array([[0.5, 1.0, -1.0, 0.0]])
    pred = np.array([[1.0, 2.0, 100.0, 50.0]])
    s, t = align_scale_shift(pred, gt)
    assert s == pytest.approx(0.5) and t == pytest.approx(0.0, abs=1e-12)


def dav2_metric_oracle(pred_depth, gt_depth):
    """The metric metrics of Depth Anything V2's metric evaluation, written out from their
    definitions, on matching 1-D arrays of depths (the scored pixels)."""
    ratio = np.maximum(gt_depth / pred_depth, pred_depth / gt_depth)
    diff = pred_depth - gt_depth
    dlog = np.log(pred_depth) - np.log(gt_depth)
    n = len(gt_depth)
    return {
        "delta1": np.count_nonzero(ratio < 1.25) / n,
        "delta2": np.count_nonzero(ratio < 1.5625) / n,
        "delta3": np.count_nonzero(ratio < 1.953125) / n,
        "abs_rel": np.sum(np.abs(diff) / gt_depth) / n,
        "sq_rel": np.sum(diff * diff / gt_depth) / n,
        "rmse": np.sqrt(np.sum(diff * diff) / n),
        "rmse_log": np.sqrt(np.sum(dlog * dlog) / n),
        "log10": np.sum(np.abs(np.log(pred_depth) / np.log(10) - np.log(gt_depth) / np.log(10))) / n,
        "silog": np.sqrt(np.sum(dlog * dlog) / n - 0.5 * (np.sum(dlog) / n) ** 2),
    }


def metric_scene(seed=0, t=3, h=16, w=20):
    """Ground-truth depth in metres (inf sky, nan invalid, some beyond the 70 m cap) and a noisy
    metric prediction, as depth."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 60.0, (t, h, w))
    gt[:, :2] = np.inf  # sky
    gt[:, -1, :4] = np.nan  # invalid
    gt[:, 5, 5:9] = 85.0  # beyond the cap
    pred = np.where(np.isfinite(gt), gt, 30.0) * rng.lognormal(0.0, 0.2, gt.shape)
    pred[0, 3, 3] = 500.0  # beyond the cap: clipped to 70
    with np.errstate(divide="ignore", invalid="ignore"):
        gt_inverse = np.where(np.isnan(gt), -1.0, 1.0 / gt)  # the loader's convention: -1 invalid, 0 sky
    return pred, gt, gt_inverse


@pytest.mark.parametrize("seed", [0, 1])
def test_metric_protocol_matches_each_formula(seed):
    """alignment='none': predictions in metres as they are; scored where the ground truth is in
    [1e-3, 70] m (no sky, no invalid, nothing beyond the cap), predictions clipped to the cap."""
    pred, gt, gt_inverse = metric_scene(seed)
    scored = np.isfinite(gt) & (gt >= 1e-3) & (gt <= 70.0)
    expected = dav2_metric_oracle(np.clip(pred[scored], 1e-3, 70.0), gt[scored])
    m = depth_metrics(1.0 / pred, gt_inverse, alignment="none")
    assert m["valid_pixels"] == scored.sum() and m["scale"] == 1.0 and m["shift"] == 0.0
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-9), name
    assert 0 < m["delta1"] < m["delta2"] < m["delta3"] <= 1 and m["silog"] > 0


def test_the_alignments_remove_what_they_say():
    pred, gt, gt_inverse = metric_scene(2)
    exact = np.where(gt_inverse >= 0, gt_inverse, 0.3)  # the ground truth, invalid pixels filled
    for alignment, prediction, perfect in (
            ("none", exact, True), ("none", 2 * exact, False),
            ("scale", 2 * exact, True), ("scale", 2 * exact + 0.01, False),
            ("median-scale", 3 * exact, True), ("median-scale", 3 * exact + 0.01, False),
            ("scale-shift", 2 * exact + 0.01, True)):
        m = depth_metrics(prediction, gt_inverse, alignment=alignment)
        assert (m["abs_rel"] < 1e-9 and m["delta1"] == 1 and m["rmse"] < 1e-6) == perfect, (alignment, m)
    m = depth_metrics(2 * exact, gt_inverse, alignment="scale")
    assert m["scale"] == pytest.approx(0.5) and m["shift"] == 0.0
    scored = (gt_inverse >= 1 / 70) & (gt_inverse <= 1000)
    inverse = 1 / pred
    m = depth_metrics(inverse, gt_inverse, alignment="median-scale")
    assert m["scale"] == pytest.approx(np.median(gt_inverse[scored]) / np.median(inverse[scored]), rel=1e-12)
    # The paper's protocol scores sky at the cap; the metric protocols leave sky out.
    assert depth_metrics(exact, gt_inverse)["valid_pixels"] > depth_metrics(exact, gt_inverse, alignment="none")["valid_pixels"]
    from flashdepth.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="scale-shift, scale, median-scale, none"):
        depth_metrics(exact, gt_inverse, alignment="median")
    with pytest.raises(UnknownNameError, match="alignment"):
        SequenceAccumulator(alignment="affine")


@pytest.mark.parametrize("alignment", ["none", "scale", "median-scale", "scale-shift"])
@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("spill", [False, True])
def test_accumulator_agrees_with_the_formulas_under_every_alignment(alignment, per_frame, spill, tmp_path):
    pred, gt, gt_inverse = metric_scene(3)
    inverse = 1.0 / pred
    acc = SequenceAccumulator(spill=spill, spill_dir=str(tmp_path), per_frame=per_frame, alignment=alignment)
    for p, g in zip(inverse, gt_inverse):
        acc.add(p, g)
    scored = acc.finish(lambda i: gt_inverse[i])
    direct = depth_metrics(inverse.astype(np.float32) if spill else inverse, gt_inverse, per_frame=per_frame,
                           alignment=alignment)
    assert_same_scores(scored, direct)


def test_streaming_median_is_numpys_median_in_bounded_memory():
    from flashdepth.metrics import streaming_median

    rng = np.random.default_rng(7)
    cases = [rng.normal(0, 1, 1001), rng.integers(-3, 4, 500).astype(float), np.full(64, 2.5),
             rng.lognormal(0, 3, 333) * rng.choice([-1, 1], 333), np.array([5.0]), np.array([1.0, -0.0, 0.0, 7.0])]
    for values in cases:
        chunks = np.array_split(values, 7)
        for limit in (1, 16, 1 << 22):  # 1: the digit-by-digit selection down to single keys
            assert streaming_median(lambda: iter(chunks), limit=limit) == np.median(values)
    assert streaming_median(lambda: iter([np.array([])])) is None
