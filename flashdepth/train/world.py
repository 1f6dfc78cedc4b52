"""The processes that train together, as the training loop sees them.

The loop never starts or joins a process group itself: whoever does (the command line under
torchrun, or a user's own launcher) describes it with a :class:`World` and passes it to
:func:`flashdepth.train.fit`. The default is one process on the device that
:func:`flashdepth.device.resolve_device` picks (CUDA, then MPS, else CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..errors import ConfigError


def _alone_all_reduce(tensor: torch.Tensor) -> None:
    """One process: the sum over processes is the tensor itself."""


def _alone_barrier() -> None:
    """One process: nobody to wait for."""


def _alone_wrap(module: torch.nn.Module) -> torch.nn.Module:
    """One process: no gradient averaging is needed."""
    return module


@dataclass(frozen=True)
class World:
    """``rank`` of ``size`` processes; ``device`` this process trains on (None: the device rule).

    ``all_reduce(tensor)`` sums ``tensor`` in place over all processes (every process calls it);
    ``barrier()`` returns once every process has called it; ``wrap(module)`` returns the module
    whose forward averages gradients over processes (DistributedDataParallel). The defaults
    describe one process alone.
    """

    rank: int = 0
    size: int = 1
    device: Optional[str | torch.device] = None
    all_reduce: Callable[[torch.Tensor], object] = _alone_all_reduce
    barrier: Callable[[], object] = _alone_barrier
    wrap: Callable[[torch.nn.Module], torch.nn.Module] = _alone_wrap

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"World(size={self.size!r}): the number of processes must be an integer >= 1")
        if not isinstance(self.rank, int) or not 0 <= self.rank < self.size:
            raise ConfigError(f"World(rank={self.rank!r}) must lie in 0..{self.size - 1} for size={self.size}")
        if self.size > 1 and (self.all_reduce is _alone_all_reduce or self.barrier is _alone_barrier
                              or self.wrap is _alone_wrap):
            raise ConfigError(f"World(size={self.size}) needs the process group's all_reduce, barrier and wrap; "
                              "the defaults only describe one process")

    @property
    def main(self) -> bool:
        """The process that writes files and prints (rank 0)."""
        return self.rank == 0
