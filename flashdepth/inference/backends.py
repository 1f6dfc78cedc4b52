"""The one table of execution backends: how a loaded model is run.

A backend turns a :class:`~flashdepth.FlashDepth` into a :class:`~flashdepth.models.Runner` (called
exactly like the model), so that :class:`~flashdepth.inference.session.DepthSession`, ``flashdepth run`` and
``flashdepth bench`` drive every backend the same way. The graph backends are built from the table of graph runtimes
(:data:`flashdepth.export.GRAPH_RUNTIMES`): one row each, plus ``<name>-int8`` where it applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import lookup, require_modules
from ..export.runtimes import GRAPH_RUNTIMES, GraphRuntime

if TYPE_CHECKING:  # the table is read by the command line, which must start without torch
    import torch

    from ..models import Runner, StreamState


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    #: (model, device) -> runner
    create: Callable[["torch.nn.Module", tuple[int, int], "torch.device"], "Runner"]
    needs: tuple[tuple[str, str, str], ...] = ()  # (module, pip package, flashdepth extra)
    runtime: Optional[str] = None  # the row of flashdepth.export.GRAPH_RUNTIMES that runs the graph, if any
    int8: bool = False  # exports with dynamic int8 matrix multiplies

    def check(self) -> None:
        require_modules(f"the {self.name!r} backend", self.needs)


def _eager(model: "torch.nn.Module", device: "torch.device") -> "Runner":
    return model.to(device)


class CompiledRunner:
    """A :class:`~flashdepth.models.Runner`: a model whose tensor computation
    (:meth:`FlashDepth.run_frames`) is compiled once per frame size; the checks and the stream's
    frame count stay in Python, outside the graph, so streaming never recompiles.

    ``mode="reduce-overhead"`` replays the step as a CUDA graph whose outputs live in the graph's
    own memory: the next replay (and, with torch's cudagraph trees, the warm-up of another graph,
    such as frame 2's with a state after frame 1's without) overwrites them. So in that mode the
    depth and the state are copied out before they are returned (``copy_out``, decided here once):
    what a call returns is the caller's, and the state fed back in is never graph-owned memory.
    """

    def __init__(self, model: "torch.nn.Module", mode: Optional[str] = None):
        import torch

        self.model = model
        self.config = model.config
        self.copy_out = mode == "reduce-overhead"
        self.compiled = WarnPastRecompileLimit(torch.compile(model.run_frames, mode=mode, dynamic=False))

    def min_input_size(self) -> int:
        return self.model.min_input_size()

    def to(self, device) -> "CompiledRunner":
        self.model.to(device)
        return self

    def eval(self) -> "CompiledRunner":
        self.model.eval()
        return self

    def __call__(self, frame: "torch.Tensor", state: Optional["StreamState"] = None
                 ) -> tuple["torch.Tensor", Optional["StreamState"]]:
        import torch

        from ..models import StreamState

        video = frame[:, None]  # (B, 1, 3, H, W)
        self.model.check_stream(video, state)
        if self.copy_out:
            # a new step: outputs of earlier replays may be reused (ours were copied out below)
            torch.compiler.cudagraph_mark_step_begin()
        depth, ssm = self.compiled(video, None if state is None else state.ssm)  # (B, 1, H, W), k x (B, h, p, n)
        depth = depth[:, 0]  # (B, H, W)
        if self.copy_out:
            depth = depth.clone()
            ssm = None if ssm is None else tuple(s.clone() for s in ssm)
        return depth, StreamState.advance(state, ssm)


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


def _compiled(model: "torch.nn.Module", device: "torch.device") -> "Runner":
    return CompiledRunner(model.to(device))


def _compiled_graphs(model: "torch.nn.Module", device: "torch.device") -> "Runner":
    # On CUDA, "reduce-overhead" replays the per-frame step as a CUDA graph (static input and
    # state buffers, one launch per frame; outputs copied out, see CompiledRunner); elsewhere it is
    # plain compilation.
    return CompiledRunner(model.to(device), mode="reduce-overhead")


def _graph_backend(runtime: str, int8: bool = False):
    def create(model: "torch.nn.Module", device: "torch.device") -> "Runner":
        from ..export import OnnxRunner

        return OnnxRunner.from_model(model.to("cpu"), runtime, device, int8=int8)  # exports on the first frame of each size
    return create


def _graph_rows(runtime: GraphRuntime) -> tuple[Backend, ...]:
    """The backends of a graph runtime: export on the fly and run there (and, where the runtime runs
    quantised graphs well, the same with dynamic int8 matrix multiplies)."""
    rows = (Backend(runtime.name, f"the model exported to ONNX (once per frame size) and run by {runtime.description}",
                    _graph_backend(runtime.name), runtime.export_needs, runtime=runtime.name),)
    if runtime.int8:
        rows += (Backend(f"{runtime.name}-int8", f"as {runtime.name}, with dynamic int8 matrix multiplies (CPU; faster, "
                         "less accurate: docs/performance.md)", _graph_backend(runtime.name, int8=True),
                         runtime.export_needs, runtime=runtime.name, int8=True),)
    return rows


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "PyTorch eager, the model's fast paths", _eager),
    Backend("compile", "torch.compile (Inductor): compiled once per frame size, faster frames after", _compiled),
    Backend("cudagraphs", "torch.compile with CUDA graphs (mode reduce-overhead): the per-frame step as one "
            "graph launch on CUDA", _compiled_graphs),
    *(row for runtime in GRAPH_RUNTIMES.values() for row in _graph_rows(runtime)),
)}


def graph_file_backends() -> list[str]:
    """The backends that run a graph file as it was written (on their runtime, no export)."""
    return [b.name for b in BACKENDS.values() if b.runtime is not None and not b.int8]


def get_backend(name: str) -> Backend:
    backend = lookup(BACKENDS, name, "backend")
    backend.check()
    return backend
