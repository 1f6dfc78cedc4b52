"""`flashdepth run` end to end on inputs the tests make, and every kind of bad input."""

import signal
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from flashdepth import FlashDepth
from flashdepth_cli.main import main
from flashdepth.inference.weights import save_checkpoint

from conftest import TINY, randomize
from media import decode_video, make_frames, write_images, write_video

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    model = randomize(FlashDepth(TINY["s"]), seed=11).eval()
    return model, save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def direct(model, images):
    """The model called directly, frame by frame, on officially normalised frames."""
    state, out = None, []
    with torch.no_grad():
        for image in images:
            x = ((image.astype(np.float64) / 255.0 - MEAN) / STD).astype(np.float32)
            depth, state = model(torch.from_numpy(x).permute(2, 0, 1)[None], state)
            out.append(depth[0].numpy())
    return np.stack(out)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run(*args):
    return main(["run", *map(str, args), "--quiet"])


def test_video_to_raw_and_vis(tmp_path, tiny_ckpt, capsys):
    model, ckpt = tiny_ckpt
    video = write_video(tmp_path / "in.mp4", make_frames(12), fps=10)
    assert run(video, "-o", tmp_path / "out", "--checkpoint", ckpt, "--device", "cpu", "--save", "raw,vis,sbs") == 0
    assert "frames 12" in capsys.readouterr().out
    depth = np.load(tmp_path / "out" / "depth.npy", mmap_mode="r")
    decoded, pts_in, fps_in = decode_video(video)
    assert depth.shape == (12, 140, 196) and depth.dtype == np.float32
    assert rel(np.asarray(depth), direct(model, decoded)) < 1e-4
    for name, width in (("depth.mp4", 196), ("sbs.mp4", 392)):
        frames, pts, fps = decode_video(tmp_path / "out" / name)
        assert len(frames) == 12 and fps == fps_in and pts == pts_in and frames[0].shape[1] == width


def test_image_folder_natural_order(tmp_path, tiny_ckpt):
    model, ckpt = tiny_ckpt
    images = make_frames(11, seed=3)
    names = [f"frame{i}.png" for i in range(11)]  # frame10 must come after frame9
    folder = write_images(tmp_path / "frames", images, names)
    assert run(folder, "-o", tmp_path / "out", "--checkpoint", ckpt, "--device", "cpu", "--precision", "fp32",
               "--save", "raw") == 0
    depth = np.load(tmp_path / "out" / "depth.npy")
    assert rel(depth, direct(model, images)) < 1e-4
    assert not (tmp_path / "out" / "depth.mp4").exists()


def test_resolution_policy_returns_depth_at_input_size(tmp_path, tiny_ckpt):
    _, ckpt = tiny_ckpt
    folder = write_images(tmp_path / "odd", [f[:131, :190] for f in make_frames(2)])
    assert run(folder, "-o", tmp_path / "a", "--checkpoint", ckpt, "--save", "raw,png16,exr") == 0
    raw = np.load(tmp_path / "a" / "depth.npy")
    assert raw.shape == (2, 131, 190)
    assert sorted(p.name for p in (tmp_path / "a" / "png16").iterdir()) == ["000000.png", "000001.png", "scales.csv"]
    from PIL import Image

    lines = (tmp_path / "a" / "png16" / "scales.csv").read_text().split()
    assert lines[0] == "frame,scale" and lines[2].startswith("1,")
    scale = float(lines[2].split(",")[1])
    png = np.asarray(Image.open(tmp_path / "a" / "png16" / "000001.png")).astype(np.float64) / scale
    assert np.abs(png - raw[1]).max() <= 1.0 / scale
    OpenEXR = pytest.importorskip("OpenEXR")
    with OpenEXR.File(str(tmp_path / "a" / "exr" / "000001.exr")) as f:
        assert np.array_equal(f.channels()["Y"].pixels, raw[1])
    assert run(folder, "-o", tmp_path / "b", "--checkpoint", ckpt, "--save", "raw", "--resolution", "84") == 0
    assert np.load(tmp_path / "b" / "depth.npy").shape == (2, 131, 190)


def test_lavfi_live_source(tmp_path, tiny_ckpt):
    _, ckpt = tiny_ckpt
    spec = "lavfi:testsrc=size=196x140:rate=5:duration=1"
    assert run(spec, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw,vis") == 0
    assert np.load(tmp_path / "out" / "depth.npy").shape == (5, 140, 196)


def test_image_kinds_gray_rgba_16bit(tmp_path, tiny_ckpt):
    from PIL import Image

    _, ckpt = tiny_ckpt
    rgb = make_frames(1)[0]
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("gray.png", "rgba.png", "deep.png"):
        assert run(tmp_path / name, "-o", tmp_path / name[:-4], "--checkpoint", ckpt, "--save", "raw") == 0
        assert np.load(tmp_path / name[:-4] / "depth.npy").shape == (1, 140, 196)
    gray = np.load(tmp_path / "gray" / "depth.npy")
    deep = np.load(tmp_path / "deep" / "depth.npy")
    assert rel(deep, gray) < 1e-5  # 16-bit x*257 is the same image as 8-bit x


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_errors_with_exit_2(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    out = tmp_path / "out"
    assert run(tmp_path / "missing.mp4", "-o", out, "--checkpoint", ckpt) == 2
    assert "does not exist" in _error_line(capsys)
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 10)
    assert run(tmp_path / "notes.mp4", "-o", out, "--checkpoint", ckpt) == 2
    assert "cannot open" in _error_line(capsys)
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert run(tmp_path / "empty.mp4", "-o", out, "--checkpoint", ckpt) == 2
    assert "empty" in _error_line(capsys)
    (tmp_path / "emptydir").mkdir()
    assert run(tmp_path / "emptydir", "-o", out, "--checkpoint", ckpt) == 2
    assert "no images" in _error_line(capsys)
    tiny = write_images(tmp_path / "tiny", [make_frames(1)[0][:10, :10]])
    assert run(tiny, "-o", out, "--checkpoint", ckpt) == 2
    assert "too small" in _error_line(capsys)
    assert not out.exists()  # a run that produced no frame leaves nothing behind (no empty depth.npy)
    good = write_images(tmp_path / "good", make_frames(1))
    assert run(good, "-o", out, "--checkpoint", ckpt, "--save", "raw,mp3") == 2
    assert "unknown output" in _error_line(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run(good, "-o", blocker / "out", "--checkpoint", ckpt) == 2
    assert "cannot write to output folder" in _error_line(capsys)
    assert run(good, "-o", tmp_path / "bad-ckpt", "--checkpoint", tmp_path / "notes.mp4") == 2
    assert "not a PyTorch checkpoint" in _error_line(capsys)
    assert not out.exists() and not (tmp_path / "bad-ckpt").exists()
    out.mkdir()  # a folder that was there before a failed run stays, empty
    assert run(tiny, "-o", out, "--checkpoint", ckpt) == 2
    assert "too small" in _error_line(capsys) and out.is_dir() and not any(out.iterdir())
    assert run(good, "-o", out, "--checkpoint", ckpt, "--save", "raw") == 0  # and a rerun is not blocked


def test_existing_outputs_need_overwrite(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    good = write_images(tmp_path / "good", make_frames(2))
    assert run(good, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw") == 0
    assert run(good, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw") == 2
    assert "--overwrite" in _error_line(capsys)
    assert run(good, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw", "--overwrite") == 0


def test_mixed_sizes_in_a_folder_are_refused_keeping_the_frames_done(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    frames = make_frames(3)
    frames[2] = frames[2][:126]
    folder = write_images(tmp_path / "mixed", frames)
    assert run(folder, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw,vis") == 2
    captured = capsys.readouterr()
    error = [line for line in captured.err.splitlines() if line.startswith("flashdepth: error:")]
    assert len(error) == 1 and "frame 2" in error[0] and "126x196" in error[0] and "one size" in error[0]
    assert "reset()" not in error[0]  # the command line speaks in its own terms, not the API's
    assert "frames 2" in captured.out  # the summary of what was done is printed even on an error
    assert np.load(tmp_path / "out" / "depth.npy").shape == (2, 140, 196)
    assert len(decode_video(tmp_path / "out" / "depth.mp4")[0]) == 2


def test_truncated_video_keeps_valid_outputs(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    video = write_video(tmp_path / "full.mkv", make_frames(30), fps=10, codec="mpeg4")
    data = video.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert run(cut, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw,vis") == 0
    assert "looks truncated" in capsys.readouterr().err
    depth = np.load(tmp_path / "out" / "depth.npy", mmap_mode="r")
    frames, _, _ = decode_video(tmp_path / "out" / "depth.mp4")
    assert 0 < depth.shape[0] < 30 and len(frames) == depth.shape[0]
    # An mp4 cut before its index (written last) says so in one line, exit 2, and names the way to
    # recover its frames (tests/test_recover.py recovers them).
    mp4 = write_video(tmp_path / "full.mp4", make_frames(30), fps=10, codec="mpeg4")
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    assert run(tmp_path / "cut.mp4", "-o", tmp_path / "out2", "--checkpoint", ckpt) == 2
    error = _error_line(capsys)
    assert "has no index (moov box missing)" in error and "--recover-with GOOD.mp4" in error
    assert not (tmp_path / "out2").exists()


def test_decode_error_mid_stream_finalises_outputs(tmp_path, tiny_ckpt):
    from flashdepth.io import InputError, OutputOptions, open_sinks
    from flashdepth.io.sources import Frame, Source
    from flashdepth.apps.pipeline import StreamRun
    from flashdepth.inference.session import DepthSession

    model, _ = tiny_ckpt

    class Breaking(Source):
        def __iter__(self):
            for i, image in enumerate(make_frames(3)):
                yield Frame(image, i, pts=i)
            raise InputError("in.mp4: stopped at frame 3, the video cannot be decoded further")

    src = Breaking()
    sinks = open_sinks(tmp_path, ["raw", "vis"], OutputOptions(src.fps, src.time_base, "turbo"))
    run = StreamRun(src, DepthSession(model, device="cpu"), sinks)
    with pytest.raises(InputError, match="frame 3"):
        run.run()
    assert run.stats.frames == 3
    assert np.load(tmp_path / "depth.npy").shape == (3, 140, 196)
    assert len(decode_video(tmp_path / "depth.mp4")[0]) == 3


def test_ctrl_c_finalises_outputs(tmp_path, tiny_ckpt):
    _, ckpt = tiny_ckpt
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "flashdepth_cli", "run", "lavfi:testsrc=size=196x140:rate=10", "-o", str(out),
           "--checkpoint", str(ckpt), "--save", "raw,vis", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    npy = out / "depth.npy"
    deadline = time.time() + 120
    while time.time() < deadline:
        if npy.exists() and npy.stat().st_size > 128 + 3 * 140 * 196 * 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    printed, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "(interrupted)" in printed and "frame(s) done" in err  # the summary is printed on Ctrl-C too
    depth = np.load(npy, mmap_mode="r")
    assert depth.shape[0] >= 3
    assert len(decode_video(out / "depth.mp4")[0]) == depth.shape[0]


def test_reset_on_cut(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    frames = [f // 4 for f in make_frames(3, seed=1)] + [192 + f // 4 for f in make_frames(3, seed=2)]
    folder = write_images(tmp_path / "cuts", frames)
    assert run(folder, "-o", tmp_path / "out", "--checkpoint", ckpt, "--save", "raw", "--reset-on-cut") == 0
    assert "1 shot cut(s)" in capsys.readouterr().out


def test_source_kinds_table_decides_opening_and_what_batch_keeps_as_given(tmp_path):
    from flashdepth.batch.job import input_key
    from flashdepth.errors import InputError
    from flashdepth.io.sources import SOURCE_KINDS, open_source, source_kind

    folder = write_images(tmp_path / "frames", make_frames(2))
    video = write_video(tmp_path / "clip.mp4", make_frames(2))
    examples = {"webcam": "webcam:0", "lavfi": "lavfi:testsrc=size=64x48", "url": "rtsp://cam.local/s1",
                "device": "/dev/video99", "folder": str(folder), "file": str(video),
                "glob": str(tmp_path / "frames" / "*.png")}
    assert set(examples) == set(SOURCE_KINDS)  # every row has an example here
    for name, spec in examples.items():
        kind = source_kind(spec)
        assert kind is SOURCE_KINDS[name], (spec, kind)
        # batch keeps live inputs as given and makes local paths absolute: the row's `live` decides
        assert kind.live == (name in ("webcam", "lavfi", "url", "device"))
        assert input_key(spec) == (spec if kind.live else str(Path(spec).resolve()))
    assert input_key("rel/clip.mp4") == str(Path("rel/clip.mp4").resolve())  # relative: made absolute
    assert source_kind(str(tmp_path / "missing.mp4")) is None
    with pytest.raises(InputError) as e:
        open_source(tmp_path / "missing.mp4")
    assert all(k.description in str(e.value) for k in SOURCE_KINDS.values())
    assert open_source(folder).frame_count == 2 and not open_source(folder).live
    assert open_source(examples["glob"]).frame_count == 2
    assert open_source("lavfi:testsrc=size=64x48:rate=5").live
    with pytest.raises(InputError, match="camera device /dev/video99 does not exist"):
        open_source("/dev/video99")


def test_run_defaults_and_checks_have_one_home():
    import inspect

    from flashdepth.errors import OptionValueError, UnknownNameError
    from flashdepth.io.sinks import OutputOptions
    from flashdepth.io.sources import Source
    from flashdepth.apps.pipeline import RunOptions
    from flashdepth.viewer import LiveViewer
    from flashdepth_cli.common import DEFAULT_SAVE, parse_save, run_options
    from flashdepth_cli.main import _parser

    args = _parser().parse_args(["run", "x.mp4", "-o", "out"])
    options = run_options(args)
    assert options == RunOptions()  # the command line's defaults are the library's
    assert parse_save(DEFAULT_SAVE) == RunOptions().outputs
    assert inspect.signature(LiveViewer).parameters["colormap"].default == OutputOptions().colormap == args.colormap
    assert RunOptions(outputs=("raw", "raw", "vis")).outputs == ("raw", "vis")
    with pytest.raises(UnknownNameError, match="mp3"):
        RunOptions(outputs=("raw", "mp3"))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(OptionValueError) as e:
            OutputOptions(ply_every=bad)
        assert e.value.name == "ply_every" and e.value.value is bad

    class Noted(Source):
        def recovery_note(self):
            return "recovered"

        def truncation_warning(self):
            return "truncated"

    assert Noted().warnings() == ["recovered", "truncated"]
    assert Noted().warnings(read_to_end=False) == ["recovered"]  # a frame limit, not the file, ended the run
