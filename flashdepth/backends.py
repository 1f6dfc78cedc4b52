"""The one table of execution backends: how a loaded model is run.

A backend turns a :class:`~flashdepth.FlashDepth` into a runner called exactly like the model,
``depth, state = runner(frame, state)``, with ``config`` and ``min_input_size()``, so that
:class:`~flashdepth.session.DepthSession`, ``flashdepth run`` and ``flashdepth bench`` drive
every backend the same way.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import MissingDependencyError, UnknownNameError

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
        for module, package, extra in self.needs:
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(f"the {self.name!r} backend", package, extra)


def _eager(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
    return model.to(device)


def _compiled(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
    import torch

    return torch.compile(model.to(device), dynamic=False)


def _compiled_graphs(model: "torch.nn.Module", size: tuple[int, int], device: "torch.device"):
    import torch

    # On CUDA, "reduce-overhead" replays the per-frame step as a CUDA graph (static input and
    # state buffers, one launch per frame); elsewhere it is plain compilation.
    return torch.compile(model.to(device), mode="reduce-overhead", dynamic=False)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "PyTorch eager, the model's fast paths", _eager),
    Backend("compile", "torch.compile (Inductor): compiled once per frame size, faster frames after", _compiled),
    Backend("cudagraphs", "torch.compile with CUDA graphs (mode reduce-overhead): the per-frame step as one "
            "graph launch on CUDA", _compiled_graphs),
)}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnknownNameError("backend", name, list(BACKENDS))
    backend = BACKENDS[name]
    backend.check()
    return backend
