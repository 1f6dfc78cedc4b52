"""`flashdepth train CONFIG [KEY=VALUE ...] [--resume CKPT]` -- one process, or many under torchrun.

The same command runs alone or as ``torchrun --nproc_per_node N -m flashdepth_cli train CONFIG``
(NCCL on GPUs, gloo on CPU). What DDP wraps is :class:`flashdepth.train.DepthLoss`, and its
forward is what every step calls, so gradients are averaged across processes.

Data: one DataLoader per training dataset, cycled in config order, one batch per step (as
published: each dataset gets 1/N of the steps). Each loader draws from a DistributedSampler
(shuffle, drop_last) whose epoch and position follow from the step, so ``--resume`` continues
with exactly the batches a straight run would have seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from flashdepth.errors import ConfigError
from flashdepth.models import FlashDepth
from flashdepth.train import DepthLoss, build_model, build_optimizer, load_train_config, warmup_schedule
from flashdepth.train.data import make_train_datasets
from flashdepth.train.setup import apply_freezing
from flashdepth.weights import detect_variant, read_checkpoint, save_checkpoint


class _Indices(Sampler):
    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class StepBatches:
    """The batch of one dataset for its c-th use: epoch = c // batches_per_epoch."""

    def __init__(self, dataset, batch_size: int, world: int, rank: int, seed: int, workers: int):
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"{dataset.name}: {len(dataset)} clips cannot fill a batch of {batch_size} "
                             f"on each of {world} processes")
        self.iterator, self.next_use = None, None

    def _start(self, use: int) -> None:
        epoch, position = divmod(use, self.per_epoch)
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        indices = list(self.sampler)[position * self.batch_size:self.per_epoch * self.batch_size]
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=_Indices(indices),
                            num_workers=self.workers, drop_last=True, persistent_workers=False)
        self.iterator, self.next_use = iter(loader), use

    def batch(self, use: int):
        if self.iterator is None or use != self.next_use or use % self.per_epoch == 0:
            self._start(use)
        self.next_use = use + 1
        return next(self.iterator)


def _setup_distributed() -> tuple[int, int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, rank, local, device


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _log(rank: int, message: str) -> None:
    if rank == 0:
        print(message, flush=True)


def _validate(model, config, device, step: int, rank: int) -> None:
    from flashdepth.data.sequence import DatasetFolder
    from flashdepth.evaluate import EvalOptions, evaluate_sequence
    from flashdepth.session import DepthSession

    model.eval()
    session = DepthSession(model, device=str(device), precision="fp32" if device.type == "cpu" else config.precision)
    opts = EvalOptions(preset=config.data.val_preset, max_frames=config.data.val_max_frames or None)
    for name in config.data.val_datasets:
        folder = Path(config.data.root) / name
        if not (folder / "dataset.json").is_file():
            _log(rank, f"validation: {folder} not found, skipped")
            continue
        results = [evaluate_sequence(session, seq, opts) for seq in DatasetFolder(folder).sequences(config.data.val_split)]
        if results:
            abs_rel = sum(r["abs_rel"] for r in results) / len(results)
            delta1 = sum(r["delta1"] for r in results) / len(results)
            _log(rank, f"step {step} val {name}: AbsRel {abs_rel:.4f} delta1 {delta1:.4f} ({len(results)} sequences)")
    model.train()


def train(config_path: Optional[str], overrides: list[str], resume: Optional[str] = None) -> int:
    config = load_train_config(config_path, overrides)
    world, rank, local, device = _setup_distributed()
    try:
        return _train(config, world, rank, device, resume)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


#: settings that fix which clips each step sees: a resume must keep them, or the data order changes
_DATA_ORDER = ("batch_size", "seed", "world_size", "data.datasets", "data.strides", "data.clip_length", "data.split",
               "data.random_stride")


def _data_order(config, world: int) -> dict:
    plain = {**config.to_dict(), "world_size": world}
    out = {}
    for key in _DATA_ORDER:
        value = plain
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out


@dataclass
class _Run:
    """What a training run carries from step to step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    start: int  # the first step to run
    frozen: list


def _build(config, world: int, rank: int, device: torch.device, resume: Optional[str]) -> _Run:
    """The model, optimizer and schedule, fresh (from the recipe's init) or resumed.

    A resume is self-contained: the model is rebuilt from the config stored in the checkpoint,
    so the recipe's ``init`` files need not exist any more.
    """
    torch.manual_seed(config.seed)
    meta = None
    if resume:
        state, meta = read_checkpoint(resume)
        if "optimizer" not in meta or "step" not in meta:
            raise ConfigError(f"{resume} is a model file, not a training checkpoint (no optimizer state); "
                              "to start from its weights use init=PATH instead of --resume")
        saved = meta.get("data_order")
        if saved is not None and saved != _data_order(config, world):
            changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in _data_order(config, world).items() if saved.get(k) != v]
            raise ConfigError(f"cannot resume {resume} exactly: {'; '.join(changed)} changed the order of the training "
                              "clips; resume with the original settings, or start a new run with init=" + resume)
        model = FlashDepth(detect_variant(state, meta))
        model.load_state_dict(state, strict=True)
    else:
        model = build_model(config)
    model = model.to(device)
    model.requires_grad_(True)  # training opts in (loaded models do not build graphs)
    frozen = apply_freezing(model, config.freeze)
    model.set_grad_checkpointing(config.grad_checkpointing)
    model.train()
    optimizer = build_optimizer(model, config)
    scheduler = warmup_schedule(optimizer, config.optim.warmup_steps, config.optim.schedule, config.steps)
    start = 0
    if meta is not None:
        optimizer.load_state_dict(meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        start = int(meta["step"])
        _log(rank, f"resumed from {resume} at step {start}")
    return _Run(model, optimizer, scheduler, start, frozen)


def _optimizer_step(run: _Run, loss: torch.Tensor, config, scaler, rank: int, step: int) -> None:
    """Backward, clip, and step unless the loss or the gradient is not finite (then say so)."""
    optimizer = run.optimizer
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(optimizer)
    params = [p for p in run.model.parameters() if p.grad is not None]
    max_norm = config.optim.grad_clip if config.optim.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    # Gradients are all-reduced, so every process sees the same norm and takes the same decision.
    if not torch.isfinite(loss.detach()) or not torch.isfinite(grad_norm):
        what = "loss" if not torch.isfinite(loss.detach()) else "gradient"
        print(f"rank {rank}: step {step} skipped: non-finite {what} (loss {loss.item():.4g}, grad norm "
              f"{grad_norm.item():.4g})", file=sys.stderr, flush=True)
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.update()
    elif scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    run.scheduler.step()


def _train(config, world: int, rank: int, device: torch.device, resume: Optional[str]) -> int:
    out = Path(config.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    run = _build(config, world, rank, device, resume)
    model = run.model
    loss_module = DepthLoss(model, config.loss).to(device)
    step_fn = DistributedDataParallel(loss_module, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else loss_module
    datasets = make_train_datasets(config, config.seed, model.config.input)
    sources = [StepBatches(d, config.batch_size, world, rank, config.seed, config.data.num_workers) for d in datasets]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _log(rank, f"training {model.config.name}: {trainable:,} trainable parameters ({len(run.frozen)} tensors frozen), "
               f"{world} process(es), datasets {', '.join(f'{d.name} ({len(d)} clips)' for d in datasets)}")
    use_amp = device.type == "cuda" and config.precision != "fp32"
    amp_dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_amp and config.precision == "fp16" else None
    # one digest file per run (a resume starts its own), so runs never mix
    digests = open(out / f"digests-rank{rank}.txt", "w") if config.check_sync else None
    t0, done = time.perf_counter(), 0
    for step in range(run.start, config.steps):
        which = step % len(sources)
        video, target = sources[which].batch(step // len(sources))
        video, target = video.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext():
            loss = step_fn(video, target)
        _optimizer_step(run, loss, config, scaler, rank, step)
        done += 1
        n = step + 1
        if digests is not None:
            digests.write(f"{n} {_digest(model)}\n")
            digests.flush()
        if n % config.log_every == 0 or n == config.steps:
            _log_loss(loss, world, rank, n, datasets[which].name, run.optimizer, done / (time.perf_counter() - t0))
        if config.save_every and (n % config.save_every == 0 or n == config.steps) and rank == 0:
            path = save_checkpoint(model, out / f"step_{n:07d}.pth", optimizer=run.optimizer.state_dict(),
                                   scheduler=run.scheduler.state_dict(), step=n, train_config=config.to_dict(),
                                   data_order=_data_order(config, world))
            _log(rank, f"saved {path}")
        if config.val_every and n % config.val_every == 0:
            if rank == 0:
                _validate(model, config, device, n, rank)
            if world > 1:
                dist.barrier()
    if digests is not None:
        digests.close()
    if world > 1:
        dist.barrier()  # no process tears the group down while another still uses it
    return 0


def _log_loss(loss: torch.Tensor, world: int, rank: int, step: int, dataset: str, optimizer, rate: float) -> None:
    value = loss.detach().float().clone()
    if world > 1:
        dist.all_reduce(value)  # every rank takes part; rank 0 prints the mean
        value /= world
    _log(rank, f"step {step} loss {value.item():.4f} ({dataset}) lr_vit {optimizer.param_groups[0]['lr']:.2e} "
               f"{rate:.2f} steps/s")
