"""Leaving PyTorch: the per-frame step as an ONNX graph with the stream state as explicit tensors.

>>> from flashdepth.export import export_onnx, OnnxRunner
>>> export_onnx(model, "flashdepth-s.onnx", size=(518, 924))          # frame, state_in_* -> depth, state_out_*
>>> runner = OnnxRunner.from_file("flashdepth-s.onnx", engine="onnxruntime")
>>> depth, state = runner(frame, state)                                # called like the model

The graph is a pure function of its inputs: a caller in C++, in a browser or in TensorRT keeps
the state (``state_out_i`` of one frame is ``state_in_i`` of the next) and needs nothing else
than the graph's metadata (see :data:`METADATA_KEYS` and docs/export.md).
"""

from .graph import METADATA_KEYS, ExportedGraph, StepGraph, export_onnx, read_metadata, state_shapes
from .runtime import ENGINES, OnnxRunner

__all__ = ["ENGINES", "METADATA_KEYS", "ExportedGraph", "OnnxRunner", "StepGraph", "export_onnx", "read_metadata",
           "state_shapes"]
