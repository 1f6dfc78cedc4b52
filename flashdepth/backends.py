"""The one table of execution backends: how a loaded model is run.

A backend turns a :class:`~flashdepth.FlashDepth` into a runner called exactly like the model,
``depth, state = runner(frame, state)``, with ``config`` and ``min_input_size()``, so that
:class:`~flashdepth.session.DepthSession`, ``flashdepth run`` and ``flashdepth bench`` drive
every backend the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from .errors import UnknownNameError, require_modules

if TYPE_CHECKING:  # the table is read by the command line, which must start without torch
    import torch


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    #: (model, processing size (H, W), device) -> runner
    create: Callable[["torch.nn.Module", tuple[int, int], "torch.device"], object]
    needs: tuple[tuple[str, str, str], ...] = ()  # (module, pip package, flashdepth extra)

    def check(self) -> None:
        require_modules(f"the {self.name!r} backend", self.needs)


def _eager(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
    return model.to(device)


class CompiledRunner:
    """A model whose tensor computation (:meth:`FlashDepth.run_frames`) is compiled once per frame
    size; the checks and the stream's frame count stay in Python, outside the graph, so streaming
    never recompiles."""

    def __init__(self, model: "torch.nn.Module", mode: Optional[str] = None):
        import torch

        self.model = model
        self.config = model.config
        self.compiled = WarnPastRecompileLimit(torch.compile(model.run_frames, mode=mode, dynamic=False))

    def min_input_size(self) -> int:
        return self.model.min_input_size()

    def to(self, device) -> "CompiledRunner":
        self.model.to(device)
        return self

    def eval(self) -> "CompiledRunner":
        self.model.eval()
        return self

    def __call__(self, frame: "torch.Tensor", state=None):
        from .models import StreamState

        video = frame[:, None]  # (B, 1, 3, H, W)
        self.model.check_stream(video, state)
        depth, ssm = self.compiled(video, None if state is None else state.ssm)
        new_state = None if ssm is None else StreamState(ssm, (0 if state is None else state.frames) + 1)
        return depth[:, 0], new_state


class WarnPastRecompileLimit:
    """Calls a ``torch.compile(dynamic=False)`` function and warns, once, when its inputs' shapes
    (and whether a state is given) have taken more distinct forms than torch's recompile limit
    (``torch._dynamo.config.recompile_limit``, 8): past it, torch runs new forms uncompiled
    (eager) and says so only in its logs."""

    def __init__(self, compiled: Callable):
        self.compiled, self.forms, self.warned = compiled, set(), False

    def __call__(self, video, ssm=None):
        form = (tuple(video.shape), None if ssm is None else tuple(tuple(t.shape) for t in ssm))
        if form not in self.forms:
            self.forms.add(form)
            import torch._dynamo

            limit = getattr(torch._dynamo.config, "recompile_limit", None) or torch._dynamo.config.cache_size_limit
            if len(self.forms) > limit and not self.warned:
                import warnings

                self.warned = True
                warnings.warn(f"backend 'compile': {len(self.forms)} frame sizes / batch shapes were compiled, more than "
                              f"torch's recompile limit ({limit}); new ones now run uncompiled (eager, slower). Keep to "
                              "fewer frame sizes (a fixed resolution), or raise torch._dynamo.config.recompile_limit",
                              RuntimeWarning, stacklevel=3)
        return self.compiled(video, ssm)


def _compiled(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
    return CompiledRunner(model.to(device))


def _compiled_graphs(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
    # On CUDA, "reduce-overhead" replays the per-frame step as a CUDA graph (static input and
    # state buffers, one launch per frame); elsewhere it is plain compilation.
    return CompiledRunner(model.to(device), mode="reduce-overhead")


def _graph_engine(engine: str, int8: bool = False):
    def create(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
        from .export import OnnxRunner

        return OnnxRunner.from_model(model.to("cpu"), engine, device, int8=int8)  # exports on the first frame of each size
    return create


#: what exporting a graph needs (flashdepth.export.export_onnx)
EXPORT_NEEDS = (("onnx", "onnx", "onnx"), ("onnxscript", "onnxscript", "onnx"))
_ORT_NEEDS = EXPORT_NEEDS + (("onnxruntime", "onnxruntime", "onnx"),)

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "PyTorch eager, the model's fast paths", _eager),
    Backend("compile", "torch.compile (Inductor): compiled once per frame size, faster frames after", _compiled),
    Backend("cudagraphs", "torch.compile with CUDA graphs (mode reduce-overhead): the per-frame step as one "
            "graph launch on CUDA", _compiled_graphs),
    Backend("onnxruntime", "the model exported to ONNX (once per frame size) and run by ONNX Runtime",
            _graph_engine("onnxruntime"), _ORT_NEEDS),
    Backend("onnxruntime-int8", "as onnxruntime, with dynamic int8 matrix multiplies (CPU; faster, less accurate: "
            "docs/performance.md)", _graph_engine("onnxruntime", int8=True), _ORT_NEEDS),
    Backend("openvino", "the model exported to ONNX (once per frame size) and run by OpenVINO on the CPU",
            _graph_engine("openvino"), (("onnx", "onnx", "openvino"), ("onnxscript", "onnxscript", "openvino"),
                                        ("openvino", "openvino", "openvino"))),
)}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnknownNameError("backend", name, list(BACKENDS))
    backend = BACKENDS[name]
    backend.check()
    return backend
