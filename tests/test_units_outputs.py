"""Units flow from a model's row to every output: the metadata file, PLY, Rerun, the live page."""

import dataclasses
import json

import numpy as np
import pytest

import flashdepth
from flashdepth.config import UNITS
from flashdepth.geometry import Unprojection
from flashdepth.inference.session import DepthSession
from flashdepth.io.sinks import METADATA, OutputOptions
from flashdepth.io.sources import Frame, Source
from flashdepth.apps.pipeline import FrameStats, RunOptions, run_to_folder

from conftest import TINY, randomize, spread_depth

H, W = 56, 84


class _Frames(Source):
    """Ready frames, no decoding."""

    name = "frames"

    def __init__(self, count: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(count)]
        self.frame_count = count

    def __iter__(self):
        for i, image in enumerate(self.images):
            yield Frame(image, i, pts=i)


def _model(metric: bool):
    config = TINY["dav2"]
    if metric:  # a tiny metric row: a sigmoid head capped at 10 m, as the DAv2 metric rows have
        config = config.replace(name="tiny-metric", dpt=dataclasses.replace(config.dpt, max_depth=10.0))
    model = randomize(flashdepth.FlashDepth(config), seed=3)
    return spread_depth(model) if not metric else model


def _read_ply_z(path):
    from plyfile import PlyData

    data = PlyData.read(str(path))
    return np.asarray(data["vertex"]["z"], dtype=np.float64), [str(c) for c in data.comments]


@pytest.mark.parametrize("metric", [False, True], ids=["relative", "metric"])
def test_outputs_record_the_rows_unit_and_ply_points_sit_at_the_models_depth(tmp_path, metric):
    model = _model(metric)
    expected = UNITS["metric-depth" if metric else "relative-inverse-depth"]
    assert model.config.unit is expected
    # The oracle: the model's own output, straight from a session on the same frame.
    direct = DepthSession(model, device="cpu").step(_Frames(1).images[0]).astype(np.float64)  # (H, W)
    metres = direct if metric else 100.0 / np.where(direct > 0, direct, np.nan)  # metric: no 100 / x
    ranked = np.unique(metres[np.isfinite(metres)])
    max_depth = float(ranked[len(ranked) // 2:][:2].mean())  # between two values: half the points are left out
    options = RunOptions(outputs=("raw", "ply"), output_options=OutputOptions(
        unprojection=Unprojection(max_depth=max_depth), ply_every=1))
    stats = run_to_folder(_Frames(2), DepthSession(model, device="cpu"), tmp_path / "out", options)
    assert stats.frames == 2

    meta = json.loads((tmp_path / "out" / METADATA).read_text())
    assert {k: meta["unit"][k] for k in ("name", "inverse", "metric", "symbol", "description")} == \
        dataclasses.asdict(expected)
    assert meta["frames"] == 2 and meta["size"] == [H, W]
    assert meta["unit"]["metres"].startswith("exact" if metric else "approximate")
    assert ("approximate" in meta["points"]) != metric

    npy = np.load(tmp_path / "out" / "depth.npy")
    np.testing.assert_allclose(npy[0], direct, rtol=1e-5, atol=1e-6)
    kept = np.isfinite(metres) & (metres > 0) & (metres <= max_depth)
    assert 0 < kept.sum() < kept.size  # some points kept, some beyond max_depth left out
    z, comments = _read_ply_z(tmp_path / "out" / "ply" / "000000.ply")
    np.testing.assert_allclose(z, metres[kept], rtol=1e-5)  # row-major order of the kept pixels
    assert any(("exact metres" if metric else "approximate metres") in c for c in comments)


def test_relative_metres_stay_100_over_the_prediction_and_metric_ones_pass_through():
    values = np.array([[0.0, 2.0, 50.0, np.nan]], dtype=np.float32)
    relative = Unprojection(max_depth=70.0).metric(values)
    np.testing.assert_allclose(relative, [[np.nan, 50.0, 2.0, np.nan]])  # 100 / value, as before
    metric = Unprojection(max_depth=70.0, unit="metric-depth").metric(values)
    np.testing.assert_allclose(metric, [[np.nan, 2.0, 50.0, np.nan]])
    assert OutputOptions(unit="metric-depth").unprojection.unit == "metric-depth"  # one truth
    with pytest.raises(flashdepth.errors.UnknownNameError, match="metric-depth"):
        OutputOptions(unit="furlongs")


class _Sent:
    def send(self, status, content_type, body):
        self.status, self.body = status, json.loads(body)


def test_the_live_page_says_the_runs_unit_and_its_colour_legend_in_metres():
    from flashdepth.viewer import LiveViewer

    viewer = LiveViewer(port=0)
    depth = np.linspace(2.0, 10.0, H * W, dtype=np.float32).reshape(H, W)  # metres
    for unit, exact in (("metric-depth", True), ("relative-inverse-depth", False)):
        viewer.update(np.zeros((H, W, 3), np.uint8), depth, FrameStats(1, (1.0,), unit))
        viewer.cache.jpeg(viewer.board.latest, "depth", viewer.colormap)  # draw it, as a client would
        sent = _Sent()
        viewer._stats(sent, {})
        assert sent.body["unit"]["name"] == unit and sent.body["legend"]["exact"] is exact
    viewer.close()
    fresh = LiveViewer(port=0)
    fresh.update(np.zeros((H, W, 3), np.uint8), depth, FrameStats(1, (1.0,), "metric-depth"))
    fresh.cache.jpeg(fresh.board.latest, "depth", fresh.colormap)
    sent = _Sent()
    fresh._stats(sent, {})
    near, far = sent.body["legend"]["near_m"], sent.body["legend"]["far_m"]
    # the 98th and 2nd percentiles of inverse depth: near and far ends of the map, in metres
    assert 2.0 <= near < 2.5 and 8.5 < far <= 10.0
    fresh.close()


def test_rerun_logs_metric_depth_as_metres(tmp_path):
    pytest.importorskip("rerun")
    from flashdepth.io.rerun_sink import RerunLogger

    logged = {}

    class Recording:  # a stand-in stream: keeps what is logged
        def send_blueprint(self, blueprint):
            pass

        def log(self, path, value, static=False):
            logged[path] = value

        def set_time(self, *args, **kwargs):
            pass

    depth = np.full((H, W), 12.5, dtype=np.float32)
    logger = RerunLogger(Recording(), Unprojection(max_depth=70.0))
    real = logger.rr

    class Rerun:  # the SDK, but a depth image is kept as the array logged
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def DepthImage(values, meter):
            return np.asarray(values) / meter

    logger.rr = Rerun()
    logger.log(Frame(np.zeros((H, W, 3), np.uint8), 0), depth, unit="metric-depth")
    np.testing.assert_allclose(logged["world/camera/depth"], 12.5)  # metres as given, not 100 / 12.5
    logger.log(Frame(np.zeros((H, W, 3), np.uint8), 1), depth, unit="relative-inverse-depth")
    np.testing.assert_allclose(logged["world/camera/depth"], 100 / 12.5, rtol=1e-6)  # today's approximation
