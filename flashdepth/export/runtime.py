"""Running exported graphs: ONNX Runtime or OpenVINO behind the model's own calling convention.

:class:`OnnxRunner` is called as ``depth, state = runner(frame, state)`` with torch tensors, like
:class:`flashdepth.FlashDepth`, so :class:`flashdepth.DepthSession`, ``flashdepth run`` and
``flashdepth bench`` drive a graph exactly as they drive the PyTorch model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..backends import BACKENDS
from ..errors import ExportError, InputShapeError, StreamStateError, UnknownNameError, require_modules
from .graph import ExportedGraph, export_onnx, read_metadata

Feeds = dict[str, np.ndarray]


def _onnxruntime(path: Path, device: torch.device) -> Callable[[Feeds], list[np.ndarray]]:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ExportError("ONNX Runtime has no CUDA provider here; install onnxruntime-gpu, or run on device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's threads otherwise spin for a while after each call, taking the cores from
    # the decoder and encoder threads of the pipeline (and from anything timed beside them)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=providers)
    return lambda feeds: session.run(None, feeds)


def _openvino(path: Path, device: torch.device) -> Callable[[Feeds], list[np.ndarray]]:
    import openvino as ov

    if device.type != "cpu":
        raise ExportError(f"the openvino engine runs on the CPU here, not on {device}; use device cpu")
    # OpenVINO computes in bf16 by default on CPUs that have it; f32 keeps the graph's answers
    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    outputs = [compiled.output(i) for i in range(len(compiled.outputs))]

    def run(feeds: Feeds) -> list[np.ndarray]:
        result = request.infer(feeds)
        return [np.array(result[o]) for o in outputs]  # copies: the request reuses its buffers

    return run


@dataclass(frozen=True)
class Engine:
    name: str
    description: str
    load: Callable[[Path, torch.device], Callable[[Feeds], list[np.ndarray]]]


#: the runtimes an exported graph can run on; each is also a row of flashdepth.backends.BACKENDS
#: of the same name, whose ``needs`` are what the runtime needs
ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("onnxruntime", "ONNX Runtime (CPU; CUDA with onnxruntime-gpu)", _onnxruntime),
    Engine("openvino", "OpenVINO (CPU)", _openvino),
)}


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise UnknownNameError("engine", name, list(ENGINES))
    require_modules(f"the {name!r} engine", BACKENDS[name].needs)
    return ENGINES[name]


class OnnxRunner:
    """An exported graph called like the model: ``depth, state = runner(frame, state)``.

    :meth:`from_file` runs a graph written earlier (fixed size and batch, from its metadata);
    :meth:`from_model` exports ``model`` on the first frame of each size into a private
    temporary folder, so a session on any video runs through the graph with no set-up.
    """

    def __init__(self, engine: str, device: torch.device | str = "cpu", model: Optional[torch.nn.Module] = None,
                 graph: Optional[ExportedGraph] = None, int8: bool = False):
        self.engine = get_engine(engine)
        self.device = torch.device(device)
        self.model = model
        self.int8 = int8
        self.graphs: dict[tuple[int, int, int], tuple[ExportedGraph, Callable]] = {}
        self.folder: Optional[tempfile.TemporaryDirectory] = None
        if graph is not None:
            self.config = graph.config
            self.fixed = graph
            self.graphs[(graph.batch or 0, *graph.size)] = (graph, self.engine.load(graph.path, self.device))
        else:
            self.config = model.config
            self.fixed = None

    @classmethod
    def from_file(cls, path: str | Path, engine: str = "onnxruntime", device: torch.device | str = "cpu"
                  ) -> "OnnxRunner":
        return cls(engine, device, graph=read_metadata(path))

    @classmethod
    def from_model(cls, model: torch.nn.Module, engine: str = "onnxruntime", device: torch.device | str = "cpu",
                   int8: bool = False) -> "OnnxRunner":
        """``int8``: export with dynamic int8 matrix multiplies (see :func:`export_onnx`)."""
        return cls(engine, device, model=model, int8=int8)

    def min_input_size(self) -> int:
        if self.fixed is not None:
            return min(self.fixed.size)
        return self.model.min_input_size()

    def to(self, device) -> "OnnxRunner":
        return self  # the engine was placed at construction

    def eval(self) -> "OnnxRunner":
        return self

    def _graph(self, batch: int, h: int, w: int) -> tuple[ExportedGraph, Callable]:
        if self.fixed is not None:
            g = self.fixed
            if (h, w) != tuple(g.size) or (g.batch is not None and batch != g.batch):
                raise InputShapeError(f"{g.path} takes frames of batch {g.batch or 'any'} at {g.size[0]}x{g.size[1]}, "
                                      f"got batch {batch} at {h}x{w}; export a graph for this size "
                                      "(flashdepth.export.export_onnx) or process at its size")
            return self.graphs[(g.batch or 0, *g.size)]
        key = (batch, h, w)
        if key not in self.graphs:
            if self.folder is None:
                self.folder = tempfile.TemporaryDirectory(prefix="flashdepth-onnx-")
            path = Path(self.folder.name) / f"{self.config.name}-{batch}x{h}x{w}.onnx"
            graph = export_onnx(self.model, path, (h, w), batch=batch, int8=self.int8)
            self.graphs[key] = (graph, self.engine.load(path, self.device))
        return self.graphs[key]

    def __call__(self, frame: torch.Tensor, state=None):
        from ..models import StreamState

        b, c, h, w = frame.shape
        graph, run = self._graph(b, h, w)
        feeds = {"frame": frame.detach().float().cpu().numpy()}
        if graph.state_shapes:
            if state is None:
                ssm = [np.zeros((b, *s[1:]), np.float32) for s in graph.state_shapes]
            elif len(state.ssm) != len(graph.state_shapes):
                raise StreamStateError(f"the state holds {len(state.ssm)} tensors; {graph.path.name} takes "
                                       f"{len(graph.state_shapes)}: pass the state this runner returned, or None")
            else:
                ssm = [s.detach().float().cpu().numpy() for s in state.ssm]
            feeds.update({f"state_in_{i}": s for i, s in enumerate(ssm)})
        elif state is not None:
            raise StreamStateError(f"{self.config.name} is a per-frame model and takes no stream state; pass state=None")
        out = run(feeds)
        depth = torch.from_numpy(out[0]).to(frame.device)  # (B, H, W)
        if not graph.state_shapes:
            return depth, None
        ssm = tuple(torch.from_numpy(s) for s in out[1:])
        return depth, StreamState(ssm, (0 if state is None else state.frames) + 1)
