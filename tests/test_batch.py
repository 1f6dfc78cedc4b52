"""`flashdepth batch` end to end, on the local engine and on Ray (a local Ray instance on the CPU):
outputs equal to `flashdepth run`, bad inputs recorded, resume, a worker killed mid-input, Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from flashdepth import FlashDepth
from flashdepth.batch import MANIFEST, PARTIAL, output_names
from flashdepth.inference.weights import save_checkpoint
from flashdepth_cli.main import main

from conftest import TINY, randomize
from media import make_frames, write_images, write_video

# A stream long enough to be caught mid-way (lavfi makes frames as fast as they are taken).
SLOW = "lavfi:testsrc=size=196x140:rate=10:duration=6"
SLOW_FRAMES = 60
# Long enough that it cannot finish between "an input is done" and the Ctrl-C, on any machine
LONGER = "lavfi:testsrc=size=196x140:rate=10:duration=30"
LONGER_FRAMES = 300
WORKERS = 2
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before any test changes it
DEADLINE_S = 240


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(randomize(FlashDepth(TINY["s"]), seed=3), tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four good inputs: two videos of the same name in different folders, an image folder, a video."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "a").mkdir()
    (root / "b").mkdir()
    return [str(write_video(root / "a" / "clip.mp4", make_frames(4, seed=1))),
            str(write_video(root / "b" / "clip.mp4", make_frames(5, seed=2))),
            str(write_images(root / "frames", make_frames(3, seed=3))),
            str(write_video(root / "walk.mp4", make_frames(3, seed=4)))]


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance (2 CPUs) for every Ray test of this module: it takes seconds to start."""
    import logging

    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'flashdepth[ray]' to test Ray")

    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def engine(request):
    """The engine's flags; the Ray runs join the module's Ray instance."""
    if request.param == "ray":
        return ["--engine", "ray", "--ray-address", request.getfixturevalue("ray_address")]
    return ["--engine", "local"]


def worker_threads(engine_flags, inputs: int) -> int:
    """CPU threads of each worker: the cores (the Ray instance's WORKERS CPUs, or this machine's)
    shared by min(WORKERS, inputs) workers, and no more than torch's default."""
    if "ray" in engine_flags:
        cores = WORKERS
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores // min(WORKERS, inputs), DEFAULT_THREADS))


_references: dict = {}


def reference(ckpt, tmp_path_factory, spec, threads) -> np.ndarray:
    """depth.npy of `flashdepth run` on ``spec``, computed with the workers' thread count: float
    sums depend on how the work is split between threads, so only then can the bits agree."""
    key = (spec, threads, os.path.getmtime(spec))
    if key not in _references:
        out = tmp_path_factory.mktemp("ref") / "out"
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            assert main(["run", spec, "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu",
                         "--save", "raw,vis", "--quiet"]) == 0
        finally:
            torch.set_num_threads(before)
        _references[key] = (np.load(out / "depth.npy"), sorted(p.name for p in out.iterdir()))
    return _references[key]


def batch_args(inputs, out, ckpt, engine_flags, *extra):
    return ["batch", *map(str, inputs), "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu",
            "--save", "raw,vis", "--workers", str(WORKERS), "--quiet", *engine_flags, *extra]


def manifest_lines(out: Path) -> list[dict]:
    """The manifest's well-formed rows (a test may have planted malformed lines, which the batch skips)."""
    rows = []
    for raw in (out / MANIFEST).read_bytes().splitlines():
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def final_state(out: Path) -> dict[str, dict]:
    return {row["input"]: row for row in manifest_lines(out)}


def npy_frames(path: Path) -> int:
    """Frames in a depth.npy being written (its fixed 128-byte header is followed by 140x196 floats)."""
    try:
        return max(0, (path.stat().st_size - 128) // (140 * 196 * 4))
    except OSError:
        return 0


def wait_for_partial(out: Path, name: str, frames: int) -> tuple[int, Path]:
    """(pid of the worker, its folder) once the worker writing ``name`` has written ``frames`` frames."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.[0-9a-f]{8}")
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline:
        for folder in (out / PARTIAL).glob(f"{name}.*"):
            match = pattern.fullmatch(folder.name)
            if match and npy_frames(folder / "depth.npy") >= frames:
                return int(match.group(1)), folder
        time.sleep(0.05)
    pytest.fail(f"no worker wrote {frames} frames of {name} within {DEADLINE_S} s")


def test_output_names_unique_and_stable(tmp_path):
    (tmp_path / "x").mkdir()
    keys = [str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "Clip.mov"), str(tmp_path / "x"),
            str(tmp_path / "manifest.jsonl.mp4"), "rtsp://cam.local/live/stream1", SLOW]
    names = output_names(keys)
    assert names == output_names(keys)  # the same list gives the same folders
    assert len({n.lower() for n in names}) == len(names)
    assert names[0].startswith("clip-") and names[1].startswith("Clip-") and names[2] == "x"
    assert names[3] != "manifest.jsonl" and names[4] == "stream1"
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", n) for n in names)


def test_bad_arguments_exit_2(tmp_path, ckpt, capsys):
    out = str(tmp_path / "out")
    assert main(["batch", "-o", out]) == 2
    assert "no inputs" in capsys.readouterr().err
    assert main(["batch", "x.mp4", "-o", out, "--ray-address", "auto"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main(["batch", "x.mp4", "-o", out, "--workers", "0"]) == 2
    assert main(["batch", "--list", str(tmp_path / "missing.txt"), "-o", out]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["batch", "x.mp4", "-o", out, "--engine", "spark"])
    assert e.value.code == 2


def test_corpus_with_a_corrupt_input_then_resume(tmp_path, tmp_path_factory, ckpt, corpus, engine, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video" * 20)
    inputs = [*corpus, str(bad)]
    out = tmp_path / "out"
    args = batch_args(inputs, out, ckpt, engine)

    assert main(args) == 1
    assert "4 done, 1 failed, 0 skipped" in capsys.readouterr().out
    state = final_state(out)
    assert set(state) == set(inputs)
    assert state[str(bad)]["status"] == "failed" and "cannot open" in state[str(bad)]["error"]
    assert not (out / state[str(bad)]["output"]).exists()
    names = {state[i]["output"] for i in corpus}
    assert len(names) == 4 and sum(n.startswith("clip-") for n in names) == 2  # a/clip, b/clip told apart
    for spec in corpus:
        row = state[spec]
        assert row["status"] == "done" and row["attempt"] == 1 and row["error"] is None
        folder = out / row["output"]
        depth, files = reference(ckpt, tmp_path_factory, spec, worker_threads(engine, len(inputs)))
        assert sorted(p.name for p in folder.iterdir() if p.name != ".flashdepth-done.json") == files
        np.testing.assert_array_equal(np.load(folder / "depth.npy"), depth)  # the very same bits
        assert row["frames"] == depth.shape[0]
    assert not (out / PARTIAL).exists()

    # Again, the corrupt input replaced by a good one: the 4 done are skipped untouched, it is redone.
    mtimes = {spec: (out / state[spec]["output"] / "depth.npy").stat().st_mtime_ns for spec in corpus}
    write_video(bad, make_frames(3, seed=5))
    first_run = len(manifest_lines(out))
    assert main(args) == 0
    assert "1 done, 0 failed, 4 skipped" in capsys.readouterr().out
    rerun = {row["input"]: row for row in manifest_lines(out)[first_run:]}
    assert {rerun[spec]["status"] for spec in corpus} == {"skipped"} and rerun[str(bad)]["status"] == "done"
    assert {spec: (out / state[spec]["output"] / "depth.npy").stat().st_mtime_ns for spec in corpus} == mtimes
    depth, _ = reference(ckpt, tmp_path_factory, str(bad), worker_threads(engine, 1))  # redone alone
    np.testing.assert_array_equal(np.load(out / rerun[str(bad)]["output"] / "depth.npy"), depth)


def test_worker_killed_mid_input(tmp_path, ckpt, corpus, engine, capsys):
    inputs = [SLOW, corpus[0], corpus[2]]
    out = tmp_path / "out"
    result = []
    run = threading.Thread(target=lambda: result.append(main(batch_args(inputs, out, ckpt, engine))), daemon=True)
    run.start()
    pid, _ = wait_for_partial(out, output_names([SLOW])[0], frames=5)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    run.join(timeout=DEADLINE_S)
    assert result == [0], capsys.readouterr()
    state = final_state(out)
    assert {row["status"] for row in state.values()} == {"done"} and set(state) == set(inputs)
    assert state[SLOW]["frames"] == SLOW_FRAMES and state[SLOW]["attempt"] == 2
    died = [row for row in manifest_lines(out) if row["input"] == SLOW and row["status"] == "failed"]
    assert len(died) == 1 and died[0]["attempt"] == 1 and "died" in died[0]["error"]
    assert died[0]["frames"] >= 5 and died[0]["worker"].endswith(f":{pid}")  # what the killed attempt wrote, and who
    assert np.load(out / state[SLOW]["output"] / "depth.npy").shape == (SLOW_FRAMES, 140, 196)
    assert not (out / PARTIAL).exists()


def test_ctrl_c_then_restart_completes(tmp_path, ckpt, corpus, engine, capsys):
    inputs = [*corpus[:3], LONGER]  # last: when it starts, a worker has finished an input already
    out = tmp_path / "out"
    args = batch_args(inputs, out, ckpt, engine)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "flashdepth_cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_partial(out, output_names([LONGER])[0], frames=5)
        deadline = time.time() + DEADLINE_S  # Ctrl-C once an input is done and the slow one is under way
        while '"status": "done"' not in (out / MANIFEST).read_text() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        printed, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "(interrupted)" in printed
    before = final_state(out)
    assert LONGER not in before and not (out / output_names([LONGER])[0]).exists()
    assert not (out / PARTIAL).exists()  # the interrupted input's unfinished folder is gone
    kept = {row["output"]: (out / row["output"] / "depth.npy").stat().st_mtime_ns for row in before.values()}
    assert kept and all(row["status"] == "done" for row in before.values())

    assert main(args) == 0
    state = final_state(out)
    assert {row["status"] for row in state.values()} <= {"done", "skipped"} and set(state) == set(inputs)
    assert sum(row["status"] == "skipped" for row in state.values()) == len(kept)
    assert state[LONGER]["status"] == "done" and state[LONGER]["frames"] == LONGER_FRAMES
    assert {name: (out / name / "depth.npy").stat().st_mtime_ns for name in kept} == kept
    assert not (out / PARTIAL).exists()


def test_engine_options_live_on_the_engine_rows(tmp_path, monkeypatch, capsys):
    from flashdepth.batch import ENGINES, BatchJob, Engine
    from flashdepth.batch.engines import GPUS_PER_WORKER, RAY_ADDRESS
    from flashdepth.errors import ConfigError, OptionValueError
    from flashdepth.inference.session import SessionSpec

    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match="ray_address is a setting of engine='ray'"):
        BatchJob(inputs=("a.mp4",), outroot=out, ray_address="auto")
    with pytest.raises(OptionValueError, match="gpus_per_worker=-1"):
        BatchJob(inputs=("a.mp4",), outroot=out, engine="ray", gpus_per_worker=-1)
    with pytest.raises(ConfigError, match="gives each worker its GPUs"):
        BatchJob(inputs=("a.mp4",), outroot=out, engine="ray", session=SessionSpec(device="cuda:1"))
    assert main(["batch", "x.mp4", "-o", out, "--engine", "ray", "--gpus-per-worker", "-1"]) == 2
    assert "--gpus-per-worker -1: give 0 or more" in capsys.readouterr().err

    # a new engine that takes the Ray address: the job and the command line follow its row alone
    monkeypatch.setitem(ENGINES, "probe", Engine("probe", "probe engine", "local", options=(RAY_ADDRESS,)))
    job = BatchJob(inputs=("a.mp4",), outroot=out, engine="probe", ray_address="somewhere",
                   session=SessionSpec(device="cuda:1"))  # it does not assign GPUs: a fixed device is fine
    assert job.ray_address == "somewhere"
    with pytest.raises(ConfigError, match="gpus_per_worker is a setting of engine='ray'"):
        BatchJob(inputs=("a.mp4",), outroot=out, engine="probe", gpus_per_worker=1.0)
    assert main(["batch", "x.mp4", "-o", out, "--engine", "local", "--ray-address", "auto"]) == 2
    assert "--ray-address is an option of --engine ray or --engine probe" in capsys.readouterr().err
    assert GPUS_PER_WORKER in ENGINES["ray"].options and ENGINES["ray"].assigns_gpus


def test_malformed_manifest_lines_are_ignored(tmp_path):
    from flashdepth.batch import Manifest, Record

    good = Record("/in/a.mp4", "a", "done", frames=3)
    lines = [b"[1, 2]", b"null", b"123", b'"text"', good.to_json().encode("utf-8"),
             b'{"input": 5, "output": "x", "status": "done"}', b'{"input": "/in/b.mp4", "output": "b"}',
             b'{"input": "/in/c.mp4", "output": "c", "status": "done", "frames": "many"}',
             b"\xff\xfe not utf-8", b"", '{"input": "/in/caf\u00e9.mp4", "output": "d", "stat'.encode("utf-8")[:-1]]
    cut = '{"input": "/in/caf\u00e9.mp4"'.encode("utf-8")
    lines.append(cut[:cut.index(b"\xc3") + 1])  # cut inside a two-byte character, no newline: the last line
    (tmp_path / MANIFEST).write_bytes(b"\n".join(lines))
    manifest = Manifest(tmp_path)
    assert manifest.final() == {good.input: good}
    assert manifest.ignored == 10  # every line that is not a record, counted (the blank one is not a line)


def test_batch_warns_once_about_bad_lines_and_a_dead_attempt_records_its_frames(tmp_path, ckpt, capsys):
    folder = write_images(tmp_path / "frames", make_frames(2, seed=9))
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_bytes(b"[1, 2]\nnull\n" + '{"input": "caf\u00e9'.encode("utf-8")[:-1])
    assert main(batch_args([folder], out, ckpt, ["--engine", "local"])) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "3 line(s)" in err
    assert final_state(out)[str(folder)]["status"] == "done"  # the good line after the cut one is read


def test_an_unwritable_output_root_is_one_line_whether_new_or_existing(tmp_path, ckpt, capsys, monkeypatch):
    real = Path.write_bytes

    def refuse(self, data):
        if self.name.startswith(".flashdepth-write-test"):
            raise PermissionError(13, "Permission denied")  # as a read-only folder does (root ignores modes)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    errors = []
    for out in (tmp_path / "new", tmp_path / "existing"):
        if out.name == "existing":
            out.mkdir()
        assert main(["batch", str(tmp_path), "-o", str(out), "--checkpoint", str(ckpt), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err
        errors.append(err.replace(out.name, "OUT"))
    assert errors[0] == errors[1] and "cannot write to the output root" in errors[0] and "Permission denied" in errors[0]
    assert not (tmp_path / "new").exists() and not any((tmp_path / "existing").iterdir())


def test_an_unloadable_model_leaves_nothing_behind(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    folder = write_images(tmp_path / "frames", make_frames(1))
    for out in (tmp_path / "new", tmp_path / "existing"):
        if out.name == "existing":
            out.mkdir()
        assert main(["batch", str(folder), "-o", str(out), "--checkpoint", str(bad), "--device", "cpu",
                     "--workers", "1", "--quiet"]) == 2
        assert "could not load the model" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and not any((tmp_path / "existing").iterdir())  # no .lock, no manifest


def _docs_snippet(ckpt, inputs, outroot) -> str:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "batch.md").read_text()
    code = doc.split("## Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'SessionSpec(model="flashdepth-s")' in code and '"/data/depth"' in code and '["a.mp4", "b.mp4", "frames/"]' in code
    return (code.replace('SessionSpec(model="flashdepth-s")', f'SessionSpec(checkpoint={str(ckpt)!r}, device="cpu")')
            .replace('"/data/depth"', repr(str(outroot))).replace('["a.mp4", "b.mp4", "frames/"]', repr(inputs)))


def test_the_docs_batch_snippet_runs_as_a_script_and_without_its_main_guard_says_why_it_fails(tmp_path, ckpt):
    inputs = [str(write_images(tmp_path / "frames", make_frames(2, seed=5)))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = tmp_path / "depth_batch.py"
    script.write_text(_docs_snippet(ckpt, inputs, tmp_path / "out"))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("1 [")
    assert (tmp_path / "out" / "frames" / "depth.npy").exists()

    unguarded = _docs_snippet(ckpt, inputs, tmp_path / "out2")
    guard = unguarded[unguarded.index("if __name__"):]
    script.write_text(unguarded.replace(guard, guard.split("\n", 1)[1].lstrip()))
    failed = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert failed.returncode != 0
    assert "ended before it started" in failed.stderr and '__name__ == "__main__"' in failed.stderr
    assert "while loading the model" not in failed.stderr
    assert not (tmp_path / "out2").exists()  # nothing left: no lock, no manifest
