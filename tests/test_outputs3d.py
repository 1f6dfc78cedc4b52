"""The 3D outputs: PLY point clouds (plyfile) and Rerun recordings (rerun-sdk), through the
command line and the library; their flags and missing dependencies."""

import importlib.util
from collections import defaultdict

import numpy as np
import pytest

from flashdepth import FlashDepth
from flashdepth.errors import MissingDependencyError
from flashdepth.geometry import Intrinsics, Unprojection, metric_depth, unproject, valid_pixels
from flashdepth.io.sinks import get_outputs
from flashdepth.io.sources import Frame
from flashdepth.inference.weights import save_checkpoint
from flashdepth_cli.main import main

from conftest import TINY, randomize, spread_depth
from media import make_frames, write_images

plyfile = pytest.importorskip("plyfile", reason="the ply output needs plyfile: pip install 'flashdepth[ply]'")
rerun_chunk = pytest.importorskip("rerun.chunk", reason="the rerun output needs rerun-sdk: pip install 'flashdepth[rerun]'")

ENTITIES = {"/world", "/world/camera", "/world/camera/rgb", "/world/camera/depth"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model = spread_depth(randomize(FlashDepth(TINY["s"]), seed=5)).eval()
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture(scope="module")
def run3d(tmp_path_factory, ckpt):
    """One run of 5 frames into raw, ply (every 2nd frame) and rerun, with a max depth that
    leaves half of the pixels out (random weights: the values are arbitrary, spread over (0, 4))."""
    root = tmp_path_factory.mktemp("run3d")
    images = make_frames(5, seed=4)
    folder = write_images(root / "frames", images)
    raw = root / "probe"
    assert main(["run", str(folder), "-o", str(raw), "--checkpoint", str(ckpt), "--save", "raw", "--quiet"]) == 0
    inverse = np.load(raw / "depth.npy")
    max_depth = float(100.0 / np.median(inverse))  # half of the pixels are farther than this
    out = root / "out"
    assert main(["run", str(folder), "-o", str(out), "--checkpoint", str(ckpt), "--save", "raw,ply,rerun",
                 "--ply-every", "2", "--fov", "70", "--max-depth", repr(max_depth), "--quiet"]) == 0
    return out, images, np.load(out / "depth.npy"), Unprojection(fov=70.0, max_depth=max_depth)


def test_ply_every_n_frames_holds_the_valid_pixels_with_their_colours(run3d):
    out, images, inverse, unprojection = run3d
    assert sorted(p.name for p in (out / "ply").iterdir()) == ["000000.ply", "000002.ply", "000004.ply"]
    for index in (0, 2, 4):
        ply = plyfile.PlyData.read(str(out / "ply" / f"{index:06d}.ply"))
        assert not ply.text and ply.byte_order == "<"
        vertex = ply["vertex"].data
        depth = metric_depth(inverse[index], max_depth=unprojection.max_depth)
        valid = valid_pixels(depth)
        assert 0.2 * valid.size < len(vertex) == valid.sum() < 0.8 * valid.size  # the far pixels were left out
        expected = unproject(depth, Intrinsics.from_fov(196, 140, 70.0))
        np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1), expected, rtol=1e-6)
        assert vertex["z"].max() <= unprojection.max_depth
        colours = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
        np.testing.assert_array_equal(colours, images[index][valid])
        assert any(c.startswith("intrinsics fx") for c in ply.comments)


def _read_rrd(path):
    """entity -> rows logged, and the frame timeline and depth maps of the depth entity."""
    store = rerun_chunk.RrdReader(str(path)).stream().collect()
    rows, frames, depths = defaultdict(int), [], []
    for chunk in store.stream():
        rows[chunk.entity_path] += chunk.num_rows
        if chunk.entity_path == "/world/camera/depth":
            batch = chunk.to_record_batch()
            frames += batch.column("frame").to_pylist()
            for i in range(batch.num_rows):
                fmt = batch.column("DepthImage:format")[i].as_py()[0]
                buffer = batch.column("DepthImage:buffer")[i].values[0].values.to_numpy()
                depths.append(buffer.view(np.float32).reshape(fmt["height"], fmt["width"]))
    order = np.argsort(frames)
    return rows, [frames[i] for i in order], [depths[i] for i in order]


def test_rerun_recording_holds_image_depth_and_camera_per_frame(run3d):
    out, _, inverse, unprojection = run3d
    rows, frames, depths = _read_rrd(out / "recording.rrd")
    assert ENTITIES <= set(rows)
    assert rows["/world/camera"] == rows["/world/camera/rgb"] == rows["/world/camera/depth"] == 5
    assert frames == [0, 1, 2, 3, 4]
    for index, logged in enumerate(depths):
        expected = np.nan_to_num(metric_depth(inverse[index], max_depth=unprojection.max_depth), nan=0.0)
        np.testing.assert_array_equal(logged, expected)  # metres, 0 where there is no point


def test_rerun_viewer_logs_a_run_fed_by_hand(tmp_path):
    from flashdepth.io.rerun_sink import new_recording
    from flashdepth.viewer import RerunViewer

    recording = new_recording()
    recording.save(str(tmp_path / "live.rrd"))
    images = make_frames(3)
    with RerunViewer(Unprojection(intrinsics=Intrinsics(100.0, 100.0, 97.5, 69.5)), recording=recording) as viewer:
        for i, image in enumerate(images):
            viewer.update(Frame(image, i), np.full((140, 196), 20.0 + i, dtype=np.float32))
        viewer.update(images[0], np.full((140, 196), 50.0, dtype=np.float32))  # a bare image is numbered too
    assert viewer.error is None
    rows, frames, depths = _read_rrd(tmp_path / "live.rrd")
    assert ENTITIES <= set(rows) and rows["/world/camera/rgb"] == 4
    assert frames == [0, 1, 2, 3] and depths[3][0, 0] == pytest.approx(2.0)  # 100 / 50


def test_missing_3d_dependencies_name_their_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("plyfile", "rerun") else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"flashdepth\[ply\]"):
        get_outputs(["raw", "ply"])
    with pytest.raises(MissingDependencyError, match=r"flashdepth\[rerun\]"):
        get_outputs(["rerun"])
    from flashdepth.viewer import RerunViewer

    with pytest.raises(MissingDependencyError, match="rerun-sdk"):
        RerunViewer()


@pytest.mark.parametrize("flags, message", [
    (["--intrinsics", "500,500,97"], "--intrinsics '500,500,97': give four numbers"),
    (["--fov", "0"], "--fov 0: give a horizontal field of view"),
    (["--max-depth", "-1"], "--max-depth -1: give a positive distance"),
    (["--ply-every", "0"], "--ply-every 0: give a number of frames"),
    (["--serve", "localhost:http"], "--serve 'localhost:http': give PORT or HOST:PORT"),
    (["--serve", ""], "--serve '': give PORT or HOST:PORT"),  # not a run without a server
])
def test_bad_3d_and_serve_flags_are_one_line_errors(tmp_path, ckpt, capsys, flags, message):
    folder = write_images(tmp_path / "frames", make_frames(1))
    assert main(["run", str(folder), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the display check is Linux's")
def test_view_rerun_without_a_display_warns_and_the_run_succeeds(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    folder = write_images(tmp_path / "frames", make_frames(3))
    assert main(["run", str(folder), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt), "--save", "raw",
                 "--view", "rerun", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: --view rerun" in err and "no display" in err
    assert np.load(tmp_path / "out" / "depth.npy").shape[0] == 3


def test_the_spawned_rerun_viewer_listens_on_loopback_and_its_failure_is_a_viewer_error(monkeypatch):
    import subprocess

    from flashdepth.errors import ViewerError
    from flashdepth.viewer import rerun_view

    started = []

    class Exited:
        returncode = 1

        def __init__(self, args, stderr=None, **kwargs):
            started.append(args)
            stderr.write(b"Error: winit EventLoopError: cannot open a window\n")
            stderr.flush()

        def poll(self):
            return 1

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(rerun_view.shutil, "which", lambda name: "/usr/bin/rerun")
    monkeypatch.setattr(subprocess, "Popen", Exited)
    with pytest.raises(ViewerError, match="exited at start .*cannot open a window"):
        rerun_view.spawn_viewer(wait_s=5)
    args = started[0]
    assert args[args.index("--bind") + 1] == "127.0.0.1"  # never 0.0.0.0
    assert args[0] == "/usr/bin/rerun" and 0 < int(args[args.index("--port") + 1]) < 65536
