"""Video Depth Anything's streaming step as an ONNX graph: the frame cache as state_in_* / state_out_*,
ONNX Runtime against PyTorch over 8 frames with the state carried (one tiny export, ~1 minute)."""

import json

import pytest
import torch

from flashdepth.export import OnnxRunner, export_onnx, read_metadata

from conftest import frames
from test_vda import rel, tiny_model

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'flashdepth[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'flashdepth[onnx]')")

SIZE = (56, 84)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model(3, metric=True).requires_grad_(False)
    graph = export_onnx(model, tmp_path_factory.mktemp("vda") / "vda.onnx", SIZE)
    return model, graph


def test_onnxruntime_streams_vda_like_pytorch(exported):
    """The graph starts from all-zero states where PyTorch gets state=None; from frame 1 on the
    output depends on the carried cache (tests/test_vda.py), so equality over 8 frames needs the
    state to go round."""
    model, graph = exported
    runner = OnnxRunner.from_file(graph.path, "onnxruntime")
    video = frames(8, *SIZE, seed=4)
    state = ref_state = None
    for t in range(8):
        depth, state = runner(video[:, t], state)
        with torch.no_grad():
            ref, ref_state = model(video[:, t], ref_state)
        assert ref.norm() > 0 and rel(depth, ref) <= 1e-4, t
    assert state.frames == ref_state.frames == 8
    for a, b in zip(state.ssm, ref_state.ssm):
        assert rel(a, b) <= 1e-4


def test_metadata_describes_the_cache(exported):
    model, graph = exported
    again = read_metadata(graph.path)
    assert again.config == model.config and again.size == SIZE
    shapes = [tuple(s) for s in again.state_shapes]
    assert shapes == [tuple(s) for s in model.cache_shapes(*SIZE)]
    assert len(shapes) == 9 and shapes[0] == (1, 1) and shapes[1] == (1, 4 * 6, 42, 32)
    assert again.input_names == ["frame"] + [f"state_in_{i}" for i in range(9)]
    import onnx

    meta = {p.key: p.value for p in onnx.load_model(str(graph.path), load_external_data=False).metadata_props}
    assert meta["flashdepth.output"] == "depth in metres"
    assert json.loads(meta["flashdepth.state_feedback"])["state_out_8"] == "state_in_8"
