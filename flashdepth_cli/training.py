"""`flashdepth train CONFIG [KEY=VALUE ...] [--resume CKPT]` -- one process, or many under torchrun.

The loop is :func:`flashdepth.train.fit`; this module only joins the process group that torchrun
describes in the environment (NCCL on GPUs, gloo on CPU), tells the loop about it with a
:class:`flashdepth.train.World`, and leaves it again.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from flashdepth.train import World, fit, load_train_config


def _join_process_group() -> World:
    """The World torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), joined; one process alone when
    not under torchrun (its device then follows flashdepth.device's rule: CUDA, MPS, CPU)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if size == 1:
        return World()
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    return World(rank=rank, size=size, device=device, all_reduce=dist.all_reduce, barrier=dist.barrier, wrap=wrap)


def train(config_path: Optional[str], overrides: list[str], resume: Optional[str] = None) -> int:
    config = load_train_config(config_path, overrides)  # a bad recipe fails before any process group
    world = _join_process_group()
    try:
        fit(config, resume=resume, world=world)
        return 0
    finally:
        if world.size > 1 and dist.is_initialized():
            dist.destroy_process_group()
