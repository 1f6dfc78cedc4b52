"""Running exported graphs: a runtime of :data:`~flashdepth.export.GRAPH_RUNTIMES` behind the model's
own calling convention.

:class:`OnnxRunner` is a :class:`~flashdepth.models.Runner` (torch tensors in and out, like
:class:`flashdepth.FlashDepth`), so :class:`flashdepth.DepthSession`, ``flashdepth run`` and
``flashdepth bench`` drive a graph exactly as they drive the PyTorch model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import torch

from ..errors import FlashDepthError, GraphFileError, InputShapeError, StreamStateError
from ..models import StreamState
from .graph import ExportedGraph, export_onnx, read_metadata
from .runtimes import RunGraph, get_runtime


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text[:200]}"


class OnnxRunner:
    """An exported graph called like the model: ``depth, state = runner(frame, state)``.

    :meth:`from_file` runs a graph written earlier (fixed size and batch, from its metadata);
    :meth:`from_model` exports ``model`` on the first frame of each size into a private
    temporary folder, so a session on any video runs through the graph with no set-up.
    """

    def __init__(self, engine: str, device: torch.device | str = "cpu", model: Optional[torch.nn.Module] = None,
                 graph: Optional[ExportedGraph] = None, int8: bool = False):
        self.engine = get_runtime(engine)  # a row of GRAPH_RUNTIMES
        self.device = torch.device(device)
        self.model = model
        self.int8 = int8
        self.graphs: dict[tuple[int, int, int], tuple[ExportedGraph, RunGraph]] = {}
        self.folder: Optional[tempfile.TemporaryDirectory] = None
        if graph is not None:
            self.config = graph.config
            self.fixed = graph
            self.graphs[(graph.batch or 0, *graph.size)] = (graph, self._load(graph))
        else:
            self.config = model.config
            self.fixed = None

    def _load(self, graph: ExportedGraph) -> RunGraph:
        """The runtime's function of a graph file; one the runtime cannot load or run (damaged past
        what :func:`read_metadata` checks) is a GraphFileError naming the file, not a runtime traceback."""
        try:
            run = self.engine.load(graph.path, self.device)
        except FlashDepthError:
            raise
        except Exception as e:
            raise GraphFileError(graph.path, f"{self.engine.name} cannot load {graph.path} ({_first_line(e)})") from e

        def checked(feeds):
            try:
                return run(feeds)
            except Exception as e:
                raise GraphFileError(graph.path, f"{self.engine.name} failed running {graph.path} "
                                                 f"({_first_line(e)})") from e
        return checked

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

    def prepare(self, batch: int, h: int, w: int) -> None:
        """Export (if need be) and load the graph for frames of ``batch`` x 3 x ``h`` x ``w`` now,
        so that the first frame of that size costs no more than the others (a session calls this
        when it is opened for a stream's size, before anything is timed)."""
        self._graph(batch, h, w)

    def _graph(self, batch: int, h: int, w: int) -> tuple[ExportedGraph, RunGraph]:
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
            self.graphs[key] = (graph, self.engine.load(path, self.device))  # ours: a failure here is a bug
        return self.graphs[key]

    def __call__(self, frame: torch.Tensor, state: Optional[StreamState] = None
                 ) -> tuple[torch.Tensor, Optional[StreamState]]:
        b, c, h, w = frame.shape
        graph, run = self._graph(b, h, w)
        feeds = {"frame": frame.detach().float()}  # (B, 3, H, W); the runtime moves it where it computes
        if graph.state_shapes:
            if state is None:
                ssm = [torch.zeros((b, *s[1:]), device=frame.device) for s in graph.state_shapes]
            elif len(state.ssm) != len(graph.state_shapes):
                raise StreamStateError(f"the state holds {len(state.ssm)} tensors; {graph.path.name} takes "
                                       f"{len(graph.state_shapes)}: pass the state this runner returned, or None")
            else:
                ssm = list(state.ssm)
            feeds.update({f"state_in_{i}": s for i, s in enumerate(ssm)})
        elif state is not None:
            raise StreamStateError(f"{self.config.name} is a per-frame model and takes no stream state; pass state=None")
        out = run(feeds)
        depth = out[0].to(frame.device)  # (B, H, W)
        if not graph.state_shapes:
            return depth, None
        return depth, StreamState.advance(state, tuple(out[1:]))
