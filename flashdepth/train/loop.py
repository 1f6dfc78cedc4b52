"""The training loop: ``flashdepth.train.fit(config, resume=None, world=World())``.

One process, or one of many (the caller starts the process group and describes it with a
:class:`~flashdepth.train.world.World`). What the world's ``wrap`` (DistributedDataParallel)
wraps is :class:`flashdepth.train.DepthLoss`, and its forward is what every step calls, so
gradients are averaged across processes.

Data: one DataLoader per training dataset, cycled in config order, one batch per step (as
published: each dataset gets 1/N of the steps). Each loader draws from a DistributedSampler
(shuffle, drop_last) whose epoch and position follow from the step, so a resume continues with
exactly the batches a straight run would have seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from ..device import autocast, resolve_device, resolve_precision
from ..errors import ConfigError, DatasetFormatError
from ..models import FlashDepth
from ..inference.weights import detect_variant, read_checkpoint, save_checkpoint
from .choices import PRECISIONS, choose
from .config import TrainConfig
from .data import make_train_datasets
from .loss import DepthLoss
from .setup import apply_freezing, build_model, build_optimizer, warmup_schedule
from .world import World


class _Indices(Sampler):
    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class StepBatches:
    """The batch of one dataset for its c-th use: epoch = c // batches_per_epoch."""

    def __init__(self, dataset, batch_size: int, world: int, rank: int, seed: int, workers: int,
                 pin_memory: bool = False):
        """``pin_memory``: page-locked batches, so that the copy to a CUDA device can overlap."""
        self.dataset, self.batch_size, self.workers, self.pin_memory = dataset, batch_size, workers, pin_memory
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ConfigError(f"{dataset.name}: {len(dataset)} clips cannot fill a batch of batch_size={batch_size} "
                              f"on each of {world} process(es); lower batch_size or add data")
        self.iterator, self.next_use = None, None

    def _start(self, use: int) -> None:
        epoch, position = divmod(use, self.per_epoch)
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        indices = list(self.sampler)[position * self.batch_size:self.per_epoch * self.batch_size]
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=_Indices(indices),
                            num_workers=self.workers, drop_last=True, persistent_workers=False,
                            pin_memory=self.pin_memory)
        self.iterator, self.next_use = iter(loader), use

    def batch(self, use: int):
        if self.iterator is None or use != self.next_use or use % self.per_epoch == 0:
            self._start(use)
        self.next_use = use + 1
        return next(self.iterator)


#: settings that fix which clips each step sees: a resume must keep them, or the data order changes
DATA_ORDER = ("batch_size", "seed", "world_size", "data.datasets", "data.strides", "data.clip_length", "data.split",
              "data.random_stride")


def data_order(config: TrainConfig, world_size: int) -> dict:
    plain = {**config.to_dict(), "world_size": world_size}
    out = {}
    for key in DATA_ORDER:
        value = plain
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out


def digest(model: torch.nn.Module) -> str:
    """A short hash of every parameter and buffer (processes that train alike hold equal digests)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """The precision a step runs in: the recipe's on an accelerator (CUDA, MPS), fp32 on CPU
    (the recipes' bf16 is for GPUs; CPU autocast would only slow a CPU run down)."""
    precision = choose(PRECISIONS, config.precision, "precision").name
    return "fp32" if device.type == "cpu" else resolve_precision(precision, device)


@dataclass
class TrainRun:
    """What a training run carries from step to step."""

    model: FlashDepth
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    start: int  # the first step to run
    frozen: list


def build_run(config: TrainConfig, world_size: int, device: torch.device, resume: Optional[str] = None,
              log: Callable[[str], None] = print) -> TrainRun:
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
                              "to start from its weights use init=PATH instead of resume")
        saved, now = meta.get("data_order"), data_order(config, world_size)
        if saved is not None and saved != now:
            changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v]
            raise ConfigError(f"cannot resume {resume} exactly: {'; '.join(changed)} changed the order of the training "
                              "clips; resume with the original settings, or start a new run with init=" + str(resume))
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
        fused = optimizer.defaults["fused"]
        optimizer.load_state_dict(meta["optimizer"])
        for group in optimizer.param_groups:  # the saved groups carry the saving run's kernel choice
            group["fused"], group["foreach"] = fused, None
        scheduler.load_state_dict(meta["scheduler"])
        start = int(meta["step"])
        log(f"resumed from {resume} at step {start}")
    return TrainRun(model, optimizer, scheduler, start, frozen)


def check_data(config: TrainConfig) -> None:
    """Every training dataset is a converted dataset folder under ``data.root`` (checked before
    any work, so a wrong root leaves nothing behind)."""
    root = Path(config.data.root)
    missing = [name for name in config.data.datasets if not (root / name / "dataset.json").is_file()]
    if missing:
        raise ConfigError(f"data.root={str(root)!r} holds no converted dataset {', '.join(map(repr, missing))} "
                          f"(no {root / missing[0] / 'dataset.json'}); convert it there first (docs/datasets.md) "
                          "or point data.root at the folder that holds it")


def _train_sources(config: TrainConfig, world: World, input_config, pin_memory: bool) -> tuple[list, list]:
    try:
        datasets = make_train_datasets(config, config.seed, input_config)
    except DatasetFormatError as e:
        raise ConfigError(f"data.root={config.data.root!r}, data.split={config.data.split!r}: {e}") from None
    sources = [StepBatches(d, config.batch_size, world.size, world.rank, config.seed, config.data.num_workers,
                           pin_memory) for d in datasets]
    return datasets, sources


class GuardedStep:
    """Backward, clip, and step unless the loss or the gradient is not finite (then say so).

    The decision is a flag on the device. With a fused AdamW (the fast path, chosen once by
    :func:`~flashdepth.train.setup.build_optimizer`) the optimizer's kernel reads the flag
    itself (``found_inf``: parameters, moments and step counts are left as they were), so the
    host never waits for the device; with any other optimizer (the reference) the host reads
    the flag every step. Either way skipped steps are reported by :meth:`report`, which the
    loop calls at its logging interval: one read of the device per interval, not per step.
    Gradients are all-reduced before the norm is taken, so every process decides alike.
    """

    def __init__(self, run: TrainRun, config: TrainConfig, scaler=None, rank: int = 0):
        self.run, self.scaler, self.rank = run, scaler, rank
        self.max_norm = config.optim.grad_clip if config.optim.grad_clip > 0 else math.inf
        self.on_device = all(group.get("fused") for group in run.optimizer.param_groups)
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, (3,) [skipped, loss, grad norm])

    def __call__(self, loss: torch.Tensor, step: int) -> None:
        optimizer, scaler = self.run.optimizer, self.scaler
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        params = [p for p in self.run.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm)  # () on the device
        loss = loss.detach().float()  # ()
        skip = (~torch.isfinite(loss) | ~torch.isfinite(grad_norm)).float()  # () 1.0 = skip this step
        self.pending.append((step, torch.stack([skip, loss, grad_norm.float()])))
        if self.on_device:
            optimizer.found_inf = skip  # the fused kernel leaves everything as it was where this is 1
            optimizer.step()
        elif not skip.item():
            optimizer.step()
        if scaler:
            scaler.update()  # lowers the scale after an overflow (the check unscale_ recorded)
        self.run.scheduler.step()

    def report(self) -> list[int]:
        """Say which steps since the last report were skipped (on stderr) and return them."""
        if not self.pending:
            return []
        values = torch.stack([v for _, v in self.pending]).tolist()  # (n, 3): one wait for the device
        skipped = []
        for (step, _), (skip, loss, grad_norm) in zip(self.pending, values):
            if skip:
                what = "loss" if not math.isfinite(loss) else "gradient"
                print(f"rank {self.rank}: step {step} skipped: non-finite {what} (loss {loss:.4g}, grad norm "
                      f"{grad_norm:.4g})", file=sys.stderr, flush=True)
                skipped.append(step)
        self.pending.clear()
        return skipped


def validate(model: FlashDepth, config: TrainConfig, world: World, device: torch.device, precision: str,
             step: int, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Score ``model`` on ``data.val_datasets`` with the evaluation protocol -> {dataset: means}.

    Every process scores its share of the sequences (sequence i goes to rank i mod size) and the
    sums are all-reduced, so no process waits for another's whole validation (a barrier held that
    long would outlast the process group's timeout). Datasets not found are skipped and said so.
    """
    from ..data.sequence import DatasetFolder
    from ..apps.evaluate import EvalOptions, evaluate_corpus
    from ..inference.session import DepthSession

    model.eval()
    session = DepthSession(model, device=device, precision=precision)
    # a metric model is scored in metres as predicted (the metric protocol), a relative one aligned
    opts = EvalOptions(preset=config.data.val_preset, max_frames=config.data.val_max_frames or None,
                       **({"alignment": "none"} if model.config.unit.metric else {}))
    out = {}
    for name in config.data.val_datasets:
        folder = Path(config.data.root) / name
        if not (folder / "dataset.json").is_file():
            log(f"validation: {folder} not found, skipped")
            continue
        sequences = DatasetFolder(folder).sequences(config.data.val_split)
        # The evaluation's one corpus loop, on this process's share of the sequences.
        mine = [r for r in evaluate_corpus(session, sequences[world.rank::world.size], opts).rows
                if r.get("abs_rel") is not None]
        sums = torch.tensor([sum(r["abs_rel"] for r in mine), sum(r["delta1"] for r in mine), len(mine)],
                            dtype=torch.float32, device=device)  # (3,) this process's share
        world.all_reduce(sums)  # (3,) over every process
        abs_rel, delta1, count = sums.tolist()
        if count:
            out[name] = {"abs_rel": abs_rel / count, "delta1": delta1 / count, "sequences": int(count)}
            log(f"step {step} val {name}: AbsRel {abs_rel / count:.4f} delta1 {delta1 / count:.4f} "
                f"({int(count)} sequences)")
    model.train()
    return out


def _log_loss(loss: torch.Tensor, world: World, log, step: int, dataset: str, optimizer, rate: float) -> None:
    value = loss.detach().float().clone()  # () this process's loss
    world.all_reduce(value)  # every rank takes part; rank 0 prints the mean
    log(f"step {step} loss {value.item() / world.size:.4f} ({dataset}) lr_vit {optimizer.param_groups[0]['lr']:.2e} "
        f"{rate:.2f} steps/s")


def fit(config: TrainConfig, resume: Optional[str | Path] = None, world: Optional[World] = None,
        log: Optional[Callable[[str], None]] = None) -> Optional[Path]:
    """Train as ``config`` says; returns the last checkpoint this call wrote (None if none).

    ``resume``: a checkpoint of an earlier run, continued exactly. ``world``: the processes that
    train together (default: this one alone, on the device rule of :mod:`flashdepth.device`).
    ``log``: where the main process's progress lines go (default: printed). Checkpoints are
    ``config.out_dir/step_NNNNNNN.pth``; :func:`flashdepth.load_model` loads them.
    """
    config = config.validate()
    world = world or World()
    device = resolve_device(world.device)
    precision = training_precision(config, device)
    say = (log or (lambda message: print(message, flush=True))) if world.main else (lambda message: None)
    check_data(config)
    run = build_run(config, world.size, device, str(resume) if resume else None, say)
    model = run.model
    datasets, sources = _train_sources(config, world, model.config.input, pin_memory=device.type == "cuda")
    out = Path(config.out_dir)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    step_fn = world.wrap(DepthLoss(model, config.loss))  # what every step calls (DDP: averages gradients)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"training {model.config.name}: {trainable:,} trainable parameters ({len(run.frozen)} tensors frozen), "
        f"{world.size} process(es), datasets {', '.join(f'{d.name} ({len(d)} clips)' for d in datasets)}")
    scaler = torch.amp.GradScaler(device.type) if PRECISIONS[precision].loss_scaling else None
    digests = None
    if config.check_sync:  # one digest file per run (a resume starts its own), so runs never mix
        out.mkdir(parents=True, exist_ok=True)
        digests = open(out / f"digests-rank{world.rank}.txt", "w")
    guarded_step = GuardedStep(run, config, scaler, world.rank)
    saved = None
    t0, done = time.perf_counter(), 0
    try:
        for step in range(run.start, config.steps):
            which = step % len(sources)
            video, target = sources[which].batch(step // len(sources))  # (B, T, 3, H, W), (B, T, H, W)
            video, target = video.to(device, non_blocking=True), target.to(device, non_blocking=True)
            with autocast(device, precision):
                loss = step_fn(video, target)  # ()
            guarded_step(loss, step)
            done += 1
            n = step + 1
            if digests is not None:
                digests.write(f"{n} {digest(model)}\n")
                digests.flush()
            if n % config.log_every == 0 or n == config.steps:
                guarded_step.report()
                _log_loss(loss, world, say, n, datasets[which].name, run.optimizer, done / (time.perf_counter() - t0))
            if config.save_every and (n % config.save_every == 0 or n == config.steps) and world.main:
                saved = save_checkpoint(model, out / f"step_{n:07d}.pth", optimizer=run.optimizer.state_dict(),
                                        scheduler=run.scheduler.state_dict(), step=n, train_config=config.to_dict(),
                                        data_order=data_order(config, world.size))
                say(f"saved {saved}")
            if config.val_every and n % config.val_every == 0:
                validate(model, config, world, device, precision, n, say)
    finally:
        guarded_step.report()
        if digests is not None:
            digests.close()
    world.barrier()  # no process tears the group down while another still uses it
    return saved
