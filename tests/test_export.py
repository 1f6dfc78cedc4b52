"""ONNX export: the exported step equals the PyTorch model while streaming, on ONNX Runtime and
OpenVINO, for every variant; its metadata is enough to drive it; the CLI writes and runs it."""

import json

import numpy as np
import pytest
import torch

from flashdepth import FlashDepth, InputShapeError
from flashdepth.errors import ExportError
from flashdepth.export import METADATA_KEYS, OnnxRunner, export_onnx, read_metadata, state_shapes
from flashdepth.session import DepthSession
from flashdepth.weights import save_checkpoint
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


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for key in ("s", "l", "full", "dav2"):
        model = model_of(key)
        out[key] = model, export_onnx(model, folder / f"{key}.onnx", SIZE)
    return out


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

    for key, (model, graph) in graphs.items():
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
