"""The one table of graph runtimes: what can execute an exported graph, and what each needs.

Torch-free (the command line reads it through :data:`flashdepth.inference.backends.BACKENDS` before torch
loads): a row names the runtime, the pip extra that brings it and the modules it needs, and its
``load`` opens a graph file as a function of numpy feeds. The graph rows of the backend table
are built from this table, so a runtime added here is a ``--backend`` choice with no other change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ExportError, lookup, require_modules

#: input name -> float32 torch tensor (on the runner's device); the runtime returns the outputs, as
#: torch tensors on the same device, in the graph's order
Feeds = dict[str, Any]
RunGraph = Callable[[Feeds], list]

Need = tuple[str, str, str]  # (module, pip package, flashdepth extra)


def export_needs(extra: str = "onnx") -> tuple[Need, ...]:
    """What writing a graph needs (:func:`flashdepth.export.export_onnx`), brought by ``extra``."""
    return (("onnx", "onnx", extra), ("onnxscript", "onnxscript", extra))


#: what exporting a graph needs, from the ``onnx`` extra
EXPORT_NEEDS = export_needs("onnx")


def _host(feeds: Feeds) -> dict:
    return {name: tensor.detach().float().cpu().numpy() for name, tensor in feeds.items()}


def _onnxruntime(path: Path, device) -> RunGraph:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ExportError("ONNX Runtime has no CUDA provider here; install onnxruntime-gpu, or run on device cpu")
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's threads otherwise spin for a while after each call, taking the cores from
    # the decoder and encoder threads of the pipeline (and from anything timed beside them)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=providers)
    if device.type == "cuda":
        return _bound(session, device)

    def run(feeds: Feeds) -> list:
        import torch

        return [torch.from_numpy(out) for out in session.run(None, _host(feeds))]

    return run


def _bound(session, device) -> RunGraph:
    """ONNX Runtime's CUDA provider through I/O binding: the graph reads its inputs from, and writes
    its outputs to, device memory that torch owns, so a frame and its state never travel
    GPU -> CPU -> GPU. Outputs go to tensors allocated for each call (a state fed back as the next
    call's input is never overwritten while it is read)."""
    import numpy as np
    import torch

    outputs = [o.name for o in session.get_outputs()]
    index = device.index or 0

    def run(feeds: Feeds) -> list:
        frame = feeds["frame"]  # (B, 3, H, W)
        b, _, h, w = frame.shape
        shapes = {"depth": (b, h, w)}  # state_out_i has the shape of state_in_i
        shapes.update({"state_out_" + name[len("state_in_"):]: tuple(t.shape) for name, t in feeds.items()
                       if name.startswith("state_in_")})
        inputs = {name: t.detach().float().contiguous() for name, t in feeds.items()}  # kept alive until the run ends
        outs = [torch.empty(shapes[name], dtype=torch.float32, device=frame.device) for name in outputs]
        binding = session.io_binding()
        for name, t in inputs.items():
            binding.bind_input(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
        for name, t in zip(outputs, outs):
            binding.bind_output(name, "cuda", index, np.float32, tuple(t.shape), t.data_ptr())
        torch.cuda.current_stream(frame.device).synchronize()  # torch's writes of the inputs are done
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # ONNX Runtime's writes of the outputs are done
        return outs

    return run


def _openvino(path: Path, device) -> RunGraph:
    import numpy as np
    import openvino as ov

    if device.type != "cpu":
        raise ExportError(f"the openvino engine runs on the CPU here, not on {device}; use device cpu")
    # OpenVINO computes in bf16 by default on CPUs that have it; f32 keeps the graph's answers
    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    outputs = [compiled.output(i) for i in range(len(compiled.outputs))]

    def run(feeds: Feeds) -> list:
        import torch

        result = request.infer(_host(feeds))
        return [torch.from_numpy(np.array(result[o])) for o in outputs]  # copies: the request reuses its buffers

    return run


@dataclass(frozen=True)
class GraphRuntime:
    name: str
    description: str
    extra: str  # the flashdepth pip extra that brings the runtime (and the exporter)
    modules: tuple[tuple[str, str], ...]  # (module, pip package) the runtime itself needs
    #: (graph file, torch.device) -> run(feeds) -> outputs
    load: Callable[[Path, Any], RunGraph]
    int8: bool = False  # runs dynamically quantised graphs well: an "<name>-int8" backend exports them

    @property
    def needs(self) -> tuple[Need, ...]:
        """What running a graph file needs: its metadata reader (onnx) and the runtime."""
        return (("onnx", "onnx", self.extra),) + tuple((m, p, self.extra) for m, p in self.modules)

    @property
    def export_needs(self) -> tuple[Need, ...]:
        """What exporting a model and running it here needs (the backend of the same name)."""
        return export_needs(self.extra) + tuple((m, p, self.extra) for m, p in self.modules)

    def check(self) -> None:
        require_modules(f"the {self.name!r} graph runtime", self.needs)


GRAPH_RUNTIMES: dict[str, GraphRuntime] = {r.name: r for r in (
    GraphRuntime("onnxruntime", "ONNX Runtime (CPU; CUDA with onnxruntime-gpu)", "onnx",
                 (("onnxruntime", "onnxruntime"),), _onnxruntime, int8=True),
    GraphRuntime("openvino", "OpenVINO (CPU)", "openvino", (("openvino", "openvino"),), _openvino),
)}


def get_runtime(name: str) -> GraphRuntime:
    """The row of ``name``, its modules checked (:class:`~flashdepth.errors.MissingDependencyError`)."""
    runtime = lookup(GRAPH_RUNTIMES, name, "graph runtime")
    runtime.check()
    return runtime
