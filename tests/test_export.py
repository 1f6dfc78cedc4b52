"""ONNX export: the exported step equals the PyTorch model while streaming, on ONNX Runtime and
OpenVINO, for every variant; its metadata is enough to drive it; the CLI writes and runs it."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from flashdepth import FlashDepth, InputShapeError
from flashdepth.errors import ExportError
from flashdepth.export import METADATA_KEYS, OnnxRunner, export_onnx, read_metadata, state_shapes
from flashdepth.inference.session import DepthSession
from flashdepth.inference.weights import save_checkpoint
from flashdepth_cli.main import main

from conftest import TINY, frames, randomize, spread_depth
from media import make_frames, write_video

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'flashdepth[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'flashdepth[onnx]')")

SIZE = (140, 196)


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def model_of(key: str, seed: int = 0) -> FlashDepth:
    return spread_depth(randomize(FlashDepth(TINY[key]), seed=seed)).eval().requires_grad_(False)


def stream_both(model, runner, video):
    """Per-frame relative L2 of the runner against the model, the state carried on both sides."""
    errors, state, ref_state = [], None, None
    for t in range(video.shape[1]):
        depth, state = runner(video[:, t], state)
        ref, ref_state = model(video[:, t], ref_state)
        errors.append(rel(depth, ref))
    return errors, state, ref_state


class _Graphs(dict):
    """key -> (model, its graph), exported on first use (a test of one variant exports only that one)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def __missing__(self, key):
        model = model_of(key)
        self[key] = model, export_onnx(model, self.folder / f"{key}.onnx", SIZE)
        return self[key]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    return _Graphs(tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("key", ["s", "l", "full", "dav2"])
def test_onnxruntime_streams_like_pytorch(graphs, key):
    """4 frames with the state carried; the graph's first frame gets all-zero states where PyTorch
    gets state=None, so frame 0 also checks that a zero state starts a stream."""
    model, graph = graphs[key]
    runner = OnnxRunner.from_file(graph.path, "onnxruntime")
    errors, state, ref_state = stream_both(model, runner, frames(4, *SIZE, seed=3))
    assert max(errors) <= 1e-4, errors
    if key == "dav2":
        assert state is None and ref_state is None
    else:
        assert state.frames == ref_state.frames == 4
        for a, b in zip(state.ssm, ref_state.ssm):
            assert rel(a, b) <= 1e-4


def test_the_state_inputs_matter(graphs):
    """A graph that ignored its state inputs would pass the parity above only by luck: feeding
    frame 2 with a zero state instead of the carried one must change the depth."""
    model, graph = graphs["s"]
    runner = OnnxRunner.from_file(graph.path, "onnxruntime")
    video = frames(2, *SIZE, seed=5)
    _, state = runner(video[:, 0], None)
    carried, _ = runner(video[:, 1], state)
    fresh, _ = runner(video[:, 1], None)
    assert rel(fresh, carried) > 1e-3


def test_metadata_describes_the_graph(graphs):
    import onnx

    for key in ("s", "l", "full", "dav2"):
        model, graph = graphs[key]
        proto = onnx.load(str(graph.path))
        meta = {p.key: p.value for p in proto.metadata_props}
        assert set(METADATA_KEYS) <= set(meta)
        assert graph.config == model.config and meta["flashdepth.variant"] == model.config.name
        assert json.loads(meta["flashdepth.input_mean"]) == list(model.config.input.mean)
        assert int(meta["flashdepth.patch_size"]) == model.patch_size and graph.size == SIZE
        inputs = [i.name for i in proto.graph.input]
        outputs = [o.name for o in proto.graph.output]
        assert inputs == graph.input_names and outputs == graph.output_names
        if key == "dav2":
            assert inputs == ["frame"] and outputs == ["depth"]
            continue
        _, state = model(frames(1, *SIZE)[:, 0], None)
        assert [tuple(s.shape) for s in state.ssm] == [tuple(s) for s in graph.state_shapes] \
            == state_shapes(model.config, 1)
        declared = [tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in proto.graph.input[1:]]
        assert declared == [tuple(s) for s in graph.state_shapes]


def test_dynamic_batch_and_fp16(tmp_path):
    model = model_of("s", seed=2)
    graph = export_onnx(model, tmp_path / "dyn.onnx", SIZE, dynamic=True)
    assert graph.batch is None
    errors, _, _ = stream_both(model, OnnxRunner.from_file(graph.path), frames(3, *SIZE, batch=3, seed=4))
    assert max(errors) <= 1e-4, errors
    half = export_onnx(model, tmp_path / "half.onnx", SIZE, fp16=True)
    assert half.precision == "fp16" and next(model.parameters()).dtype == torch.float32  # the model is untouched
    errors, _, _ = stream_both(model, OnnxRunner.from_file(half.path), frames(3, *SIZE, seed=4))
    assert 0 < max(errors) <= 2e-2, errors  # float16 inside: close, not equal


def test_openvino_streams_like_pytorch(graphs):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    model, graph = graphs["s"]
    errors, _, _ = stream_both(model, OnnxRunner.from_file(graph.path, "openvino"), frames(4, *SIZE, seed=6))
    assert max(errors) <= 1e-4, errors


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_session_backend_exports_once_per_size(backend):
    pytest.importorskip(backend)
    model = model_of("s", seed=7)
    runner = OnnxRunner.from_model(model, backend)
    graph_session = DepthSession(runner, device="cpu")
    torch_session = DepthSession(model, device="cpu")
    images = make_frames(3, 140, 196)
    for image in images:
        a, b = graph_session.step(image), torch_session.step(image)
        assert np.linalg.norm(a - b) / np.linalg.norm(b) <= 1e-4
    assert len(runner.graphs) == 1  # one export for the stream, not one per frame


def test_graph_refuses_other_sizes_and_foreign_files(graphs, tmp_path):
    _, graph = graphs["s"]
    runner = OnnxRunner.from_file(graph.path)
    with pytest.raises(InputShapeError, match="140x196"):
        runner(torch.zeros(1, 3, 168, 196))
    import onnx

    proto = onnx.load(str(graph.path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(ExportError, match="not written by flashdepth"):
        read_metadata(tmp_path / "plain.onnx")
    with pytest.raises(InputShapeError, match="multiple of the 14-pixel patch"):
        export_onnx(model_of("s"), tmp_path / "bad.onnx", (141, 196))


def test_cli_export_then_run_on_a_video(tmp_path, capsys):
    model = model_of("s", seed=11)
    ckpt = save_checkpoint(model, tmp_path / "tiny.pth")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "--size", "140x196", "-o", str(out), "--verify", "2"]) == 0
    printed = capsys.readouterr().out
    assert "state_in_0" in printed and "relative L2" in printed
    assert float(printed.rsplit(":", 1)[1]) <= 1e-4
    video = write_video(tmp_path / "in.mp4", make_frames(5), fps=10)
    runs = {}
    for name, args in {"torch": ["--checkpoint", str(ckpt)],
                       "backend": ["--checkpoint", str(ckpt), "--backend", "onnxruntime"],
                       "file": ["--checkpoint", str(out), "--backend", "onnxruntime"]}.items():
        assert main(["run", str(video), "-o", str(tmp_path / name), "--device", "cpu", "--save", "raw", "--quiet",
                     *args]) == 0
        runs[name] = np.load(tmp_path / name / "depth.npy")
    for name in ("backend", "file"):
        assert runs[name].shape == (5, 140, 196)
        assert np.linalg.norm(runs[name] - runs["torch"]) / np.linalg.norm(runs["torch"]) <= 1e-4
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "--size", "141x196", "-o", str(out)]) == 2
    assert "multiples of 14" in capsys.readouterr().err
    missing = tmp_path / "missing.onnx"
    assert main(["run", str(video), "-o", str(tmp_path / "none"), "--checkpoint", str(missing), "--quiet"]) == 2
    assert "`flashdepth export onnx" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_int8_graph_is_close_and_smaller(graphs, tmp_path):
    """Dynamic int8 quantisation: the weights of the matrix multiplies shrink 4x, the depth stays
    close to fp32 (quantisation error, not equality) and the state still streams."""
    model, graph = graphs["s"]
    q = export_onnx(model, tmp_path / "int8.onnx", SIZE, int8=True)
    assert q.precision == "int8" and q.state_shapes == graph.state_shapes
    assert q.path.stat().st_size < graph.path.stat().st_size
    errors, state, _ = stream_both(model, OnnxRunner.from_file(q.path), frames(3, *SIZE, seed=8))
    print("int8 relative L2 per frame", errors)
    assert 0 < max(errors) <= 0.1, errors
    assert state.frames == 3
    with pytest.raises(ExportError, match="exclude each other"):
        export_onnx(model, tmp_path / "both.onnx", SIZE, int8=True, fp16=True)


def _with_metadata(source, target, **changes):
    import onnx

    proto = onnx.load(str(source))
    for entry in proto.metadata_props:
        if entry.key in changes:
            entry.value = changes[entry.key]
    onnx.save(proto, str(target))


def _unrelated_with_our_metadata(source, target):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    proto = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y]))
    for entry in onnx.load(str(source)).metadata_props:
        proto.metadata_props.add(key=entry.key, value=entry.value)
    onnx.save(proto, str(target))


def _external_data_at(location):
    def write(source, target):
        import onnx

        proto = onnx.load(str(source))
        tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=location)
        onnx.save(proto, str(target))
    return write


BROKEN = {  # kind -> (source graph, the file to write) -> None
    "random bytes": lambda s, t: t.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()),
    "text": lambda s, t: t.write_text("this is a text file, not a graph\n" * 40),
    "empty": lambda s, t: t.write_bytes(b""),
    "truncated": lambda s, t: t.write_bytes(s.read_bytes()[: s.stat().st_size // 2]),
    "config not JSON": lambda s, t: _with_metadata(s, t, **{"flashdepth.config": "{not json"}),
    "config not a config": lambda s, t: _with_metadata(s, t, **{"flashdepth.config": '{"depth": 3}'}),
    "state shapes not JSON": lambda s, t: _with_metadata(s, t, **{"flashdepth.state_shapes": "[[1, 2"}),
    "state shapes lie": lambda s, t: _with_metadata(s, t, **{"flashdepth.state_shapes": "[[1, 4, 8, 8]]"}),
    "input size lies": lambda s, t: _with_metadata(s, t, **{"flashdepth.input_size": "[168, 196]"}),
    "input size not HxW": lambda s, t: _with_metadata(s, t, **{"flashdepth.input_size": "[-14]"}),
    "batch not a number": lambda s, t: _with_metadata(s, t, **{"flashdepth.batch": "many"}),
    "batch zero": lambda s, t: _with_metadata(s, t, **{"flashdepth.batch": "0"}),
    "batch lies": lambda s, t: _with_metadata(s, t, **{"flashdepth.batch": "3"}),
    "patch size lies": lambda s, t: _with_metadata(s, t, **{"flashdepth.patch_size": "16"}),
    "precision unknown": lambda s, t: _with_metadata(s, t, **{"flashdepth.precision": "fp64"}),
    "unrelated graph with our metadata": _unrelated_with_our_metadata,
    "external data outside the folder": _external_data_at("../outside.bin"),
    "external data at an absolute path": _external_data_at("/etc/hostname"),
    "external data missing": _external_data_at("weights.bin"),
}


@pytest.fixture(scope="module")
def little_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "in.mp4", make_frames(2), fps=10)


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_graph_file_is_one_line_and_exit_2(graphs, kind, tmp_path, little_video, capsys):
    """Issue 20: each kind ended as "internal error", exit 1. Now the graph is checked against its
    metadata when it is opened: GraphFileError from Python, one line and exit 2 on the command line."""
    from flashdepth.errors import GraphFileError
    from flashdepth.inference.session import SessionSpec

    folder = tmp_path / "graphs"
    folder.mkdir()
    bad = folder / "bad.onnx"
    BROKEN[kind](graphs["s"][1].path, bad)
    with pytest.raises(GraphFileError) as caught:
        SessionSpec(checkpoint=str(bad)).open("cpu")
    assert "\n" not in str(caught.value) and str(bad) in str(caught.value)
    out = tmp_path / "out"
    assert main(["run", str(little_video), "-o", str(out), "--checkpoint", str(bad), "--device", "cpu", "--quiet",
                 "--save", "raw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flashdepth: error:") and "\n" not in err and "internal error" not in err, err
    assert not out.exists()


def test_options_a_graph_file_fixes_are_refused_not_ignored(graphs, little_video, tmp_path, capsys):
    """Issue 20: with an .onnx checkpoint, resolution, a torch backend and another model were ignored
    without a word. The spec refuses them (GraphOptionError); the command line says it in flags."""
    from flashdepth.errors import GraphOptionError
    from flashdepth.inference.session import SessionSpec

    model, graph = graphs["s"]
    path = str(graph.path)
    cases = {"resolution": ({"resolution": 280}, "140x196"),
             "model": ({"model": "flashdepth-l"}, model.config.name),
             "backend": ({"backend": "compile"}, "onnxruntime, openvino")}
    for option, (given, named) in cases.items():
        with pytest.raises(GraphOptionError) as caught:
            SessionSpec(checkpoint=path, **given).open("cpu")
        assert caught.value.option == option and named in str(caught.value)
        flag, value = f"--{option}", str(next(iter(given.values())))
        out = tmp_path / option
        assert main(["run", str(little_video), "-o", str(out), "--checkpoint", path, "--device", "cpu", "--quiet",
                     flag, value]) == 2
        err = capsys.readouterr().err
        assert f"{flag} {value} " in err and named in err and not out.exists()
    session = SessionSpec(checkpoint=path, model=model.config.name, backend="openvino"
                          if importlib.util.find_spec("openvino") else None).open("cpu")  # its own variant is fine
    assert session.fixed_size == SIZE


def test_metadata_alone_drives_the_graph_from_8_bit_pixels(graphs):
    """A caller outside Python (C++, a browser) has the file only: the metadata says the layout, the
    channel order, the [0, 1] scaling before mean and std, and which output feeds which input. Driven
    by those rules alone, through ONNX Runtime directly, the graph gives the session's depth."""
    import onnx
    import onnxruntime as ort

    model, graph = graphs["s"]
    meta = {p.key: p.value for p in onnx.load(str(graph.path), load_external_data=False).metadata_props}
    assert (meta["flashdepth.input_layout"], meta["flashdepth.channel_order"], meta["flashdepth.input_range"]) \
        == ("NCHW", "RGB", "[0, 1]")
    feedback = json.loads(meta["flashdepth.state_feedback"])
    assert feedback == {f"state_out_{i}": f"state_in_{i}" for i in range(len(graph.state_shapes))}
    mean = np.array(json.loads(meta["flashdepth.input_mean"]), np.float32)
    std = np.array(json.loads(meta["flashdepth.input_std"]), np.float32)
    h, w = json.loads(meta["flashdepth.input_size"])
    session = ort.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds = {f"state_in_{i}": np.zeros(s, np.float32) for i, s in enumerate(json.loads(meta["flashdepth.state_shapes"]))}
    torch_session = DepthSession(model, device="cpu", size=(h, w))
    for image in make_frames(3, h, w):  # (H, W, 3) uint8 RGB
        feeds["frame"] = ((image / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1)[None]  # (1, 3, H, W)
        out = dict(zip(names, session.run(None, feeds)))
        feeds.update({feedback[k]: v for k, v in out.items() if k in feedback})
        ref = torch_session.step(image)
        assert np.linalg.norm(out["depth"][0] - ref) / np.linalg.norm(ref) <= 1e-4


def test_export_drops_only_the_exporters_torchvision_notes(tmp_path):
    """Every export logged four "torchvision is not installed" lines (the exporter registers
    torchvision's detection ops); they are dropped around the export call, nothing else is."""
    import logging

    from flashdepth.export import graph as graph_module

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger(graph_module._EXPORTER_LOGGER)
    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    try:
        with graph_module._quiet_exporter_log():
            logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
            logger.warning("something else")
        logger.warning("torchvision is not installed. Skipping %s", "after")  # the filter is gone again
        assert seen == ["something else", "torchvision is not installed. Skipping after"]
        seen.clear()
        export_onnx(model_of("dav2"), tmp_path / "quiet.onnx", SIZE)
        assert not [m for m in seen if "torchvision" in m], seen
    finally:
        logger.removeHandler(handler)


class _FakeBinding:
    def __init__(self):
        self.inputs, self.outputs, self.synchronized = {}, {}, False

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        self.inputs[name] = (device_type, device_id, element_type, tuple(shape), buffer_ptr)

    def bind_output(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        self.outputs[name] = (device_type, device_id, element_type, tuple(shape), buffer_ptr)

    def synchronize_outputs(self):
        self.synchronized = True


class _FakeCudaSession:
    """ONNX Runtime's session with the CUDA provider, as far as the runner sees it."""

    def __init__(self, path, options, providers):
        self.providers, self.bindings, self.ran = providers, [], 0

    def get_outputs(self):
        return [type("Out", (), {"name": n})() for n in ("depth", "state_out_0", "state_out_1")]

    def io_binding(self):
        self.bindings.append(_FakeBinding())
        return self.bindings[-1]

    def run_with_iobinding(self, binding):
        self.ran += 1

    def run(self, *args):
        raise AssertionError("with the CUDA provider, frames must not go through host memory (session.run)")


def test_onnxruntime_on_cuda_binds_device_memory(monkeypatch):
    """Issue 21: with the CUDA provider, every frame went GPU -> CPU -> GPU. The runner now binds the
    tensors where torch keeps them. No GPU here: the session and the CUDA stream are stand-ins, so
    this checks the binding (pointers, shapes, device, fresh outputs, no host path), not the kernels;
    that ONNX Runtime computes the right depth from bound memory needs a GPU (tests/test_gpu.py)."""
    import onnxruntime as ort

    from flashdepth.export.runtimes import GRAPH_RUNTIMES

    sessions, synced = [], []
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: sessions.append(_FakeCudaSession(*a, **k))
                        or sessions[-1])
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type(
        "Stream", (), {"synchronize": lambda self: synced.append(device)})())
    run = GRAPH_RUNTIMES["onnxruntime"].load("graph.onnx", torch.device("cuda", 1))
    session = sessions[0]
    assert session.providers[0] == ("CUDAExecutionProvider", {"device_id": 1})
    feeds = {"frame": torch.randn(2, 3, 28, 42), "state_in_0": torch.randn(2, 4, 8, 8),
             "state_in_1": torch.randn(2, 4, 8, 8)}
    outs = run(feeds)
    binding = session.bindings[-1]
    assert session.ran == 1 and binding.synchronized and len(synced) == 1
    for name, tensor in feeds.items():
        assert binding.inputs[name] == ("cuda", 1, np.float32, tuple(tensor.shape), tensor.data_ptr())  # no copy
    assert [binding.outputs[n][3] for n in ("depth", "state_out_0", "state_out_1")] == [(2, 28, 42), (2, 4, 8, 8),
                                                                                         (2, 4, 8, 8)]
    assert [binding.outputs[n][4] for n in ("depth", "state_out_0", "state_out_1")] == [t.data_ptr() for t in outs]
    assert not {t.data_ptr() for t in outs} & {t.data_ptr() for t in feeds.values()}  # a state out never aliases one in
    again = run({"frame": feeds["frame"], "state_in_0": outs[1], "state_in_1": outs[2]})
    assert not {t.data_ptr() for t in again} & {t.data_ptr() for t in outs}  # fresh outputs each call


def test_a_session_opened_for_a_size_exports_before_the_first_frame(tmp_path):
    """Issue 20: the on-the-fly export was done inside frame 1, so a progress display timed it as a
    frame (30 s/frame, an 11-minute ETA). Opened with the frame size, the session exports at open."""
    from flashdepth.inference.session import SessionSpec

    model = model_of("s", seed=12)
    ckpt = save_checkpoint(model, tmp_path / "tiny.pth")
    session = SessionSpec(checkpoint=str(ckpt), backend="onnxruntime").open("cpu", frame_size=(140, 196))
    assert list(session.model.graphs) == [(1, 140, 196)]
    exported = session.model.graphs[(1, 140, 196)]
    reference = DepthSession(model, device="cpu")
    for image in make_frames(2, 140, 196):
        a, b = session.step(image), reference.step(image)
        assert np.linalg.norm(a - b) / np.linalg.norm(b) <= 1e-4
    assert session.model.graphs[(1, 140, 196)] is exported  # no second export inside the stream
