"""Leaving PyTorch: the per-frame step as an ONNX graph with the stream state as explicit tensors.

>>> from flashdepth.export import export_onnx, OnnxRunner
>>> export_onnx(model, "flashdepth-s.onnx", size=(518, 924))          # frame, state_in_* -> depth, state_out_*
>>> runner = OnnxRunner.from_file("flashdepth-s.onnx", engine="onnxruntime")
>>> depth, state = runner(frame, state)                                # called like the model

The graph is a pure function of its inputs: a caller in C++, in a browser or in TensorRT keeps
the state (``state_out_i`` of one frame is ``state_in_i`` of the next) and needs nothing else
than the graph's metadata (see :data:`METADATA_KEYS` and docs/export.md).

The table of runtimes (:data:`GRAPH_RUNTIMES`, :mod:`flashdepth.export.runtimes`) imports
without torch; the graph and the runner load torch on first use.
"""

from __future__ import annotations

from .runtimes import EXPORT_NEEDS, GRAPH_RUNTIMES, GraphRuntime, get_runtime
from ..utils import lazy_attributes

_LAZY = {
    "METADATA_KEYS": "graph", "ExportedGraph": "graph", "StepGraph": "graph", "export_onnx": "graph",
    "read_metadata": "graph", "state_shapes": "graph", "OnnxRunner": "runtime",
}

__all__ = ["EXPORT_NEEDS", "GRAPH_RUNTIMES", "GraphRuntime", "get_runtime", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
