"""Typed training configuration, read from TOML with ``key.sub=value`` overrides.

Unknown keys are errors. ``configs/`` holds the paper's recipes (stage-1 S, stage-1 L,
stage-2 Full).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import ModelConfig, from_dict, to_plain
from ..data.datasets import DATASETS
from ..errors import ConfigError
from ..inference.registry import get_config
from .choices import CROPS, LOSSES, PRECISIONS, SCHEDULES, check_loss_unit, choose

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{key}={value!r} must be >= {low}")


@dataclass(frozen=True)
class DataConfig:
    root: str = "data"  # holds one converted <dataset>/ folder per name below
    datasets: tuple[str, ...] = ("mvs-synth", "dynamicreplica", "tartanair", "pointodyssey", "spring")
    strides: tuple[int, ...] = ()  # one per dataset; empty = each dataset's published stride
    random_stride: bool = False  # draw the stride of each clip from 1..stride (off in the paper's code)
    clip_length: int = 5
    crop: str = "center"  # a row of choices.CROPS: "center" (stage 1) or "random" (one random crop per clip)
    crop_size: tuple[int, int] = (518, 518)  # (H, W), multiples of 14
    split: str = "train"
    val_datasets: tuple[str, ...] = ("sintel", "waymo")
    val_split: str = "val"
    val_preset: str = "base"
    val_max_frames: int = 0  # 0 = every frame of each validation sequence
    num_workers: int = 2

    def validate(self) -> "DataConfig":
        _at_least("data.clip_length", self.clip_length, 2)  # a clip is a window of frames with a stride
        _at_least("data.num_workers", self.num_workers, 0)
        _at_least("data.val_max_frames", self.val_max_frames, 0)
        if not self.datasets:
            raise ConfigError("data.datasets is empty; name at least one converted training dataset")
        if len(self.crop_size) != 2 or any(s < 14 or s % 14 for s in self.crop_size):
            raise ConfigError(f"data.crop_size={list(self.crop_size)} must be [H, W], positive multiples of 14 "
                              "(e.g. [518, 518])")
        if self.strides and len(self.strides) != len(self.datasets):
            raise ConfigError(f"data.strides has {len(self.strides)} entries for {len(self.datasets)} datasets")
        for i, stride in enumerate(self.strides):
            _at_least(f"data.strides[{i}]", stride, 1)
        choose(CROPS, self.crop, "data.crop")
        return self

    def stride_of(self, i: int) -> int:
        if self.strides:
            return self.strides[i]
        name = self.datasets[i]
        return DATASETS[name].clip_stride if name in DATASETS else 1


@dataclass(frozen=True)
class OptimConfig:
    lr_vit: float = 5e-6
    lr_dpt: float = 5e-5  # DPT decoder and head
    lr_temporal: float = 1e-4
    lr_fusion: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    schedule: str = "constant"  # a row of choices.SCHEDULES: "constant", or "cosine" (down to 0 at the last step)
    grad_clip: float = 0.0  # 0 = no clipping

    def validate(self) -> "OptimConfig":
        for key in ("lr_vit", "lr_dpt", "lr_temporal", "lr_fusion", "weight_decay", "grad_clip"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"optim.{key}={value!r} must be a finite number >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas={list(self.betas)} must be two numbers in [0, 1), e.g. [0.9, 0.95]")
        _at_least("optim.warmup_steps", self.warmup_steps, 0)
        choose(SCHEDULES, self.schedule, "optim.schedule")
        return self


@dataclass(frozen=True)
class TrainConfig:
    model: str = "flashdepth-s"  # a registry name ...
    model_config: Optional[ModelConfig] = None  # ... or an explicit architecture
    init: str = ""  # stage 1: Depth Anything V2 (or any loadable) checkpoint; "" = random init
    init_student: str = ""  # stage 2: FlashDepth-S checkpoint (student + temporal)
    init_teacher: str = ""  # stage 2: FlashDepth-L checkpoint (frozen teacher branch)
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed
    # > 0: the model gets a metric head (sigmoid x metric_head metres, as Depth Anything V2's metric
    # models) and outputs depth in metres; train it with loss = "silog". 0: the model's own head.
    metric_head: float = 0.0
    steps: int = 100_000
    batch_size: int = 4  # clips per process
    loss: str = "l1"  # a row of choices.LOSSES: "l1" on disparity x100, or "ssi" (scale-and-shift invariant)
    precision: str = "bf16"  # a row of choices.PRECISIONS, on CUDA and MPS; CPU always runs fp32
    grad_checkpointing: bool = True
    seed: int = 0
    out_dir: str = "runs/flashdepth"
    log_every: int = 10
    val_every: int = 1000  # 0 = never
    save_every: int = 1000
    check_sync: bool = False  # write a digest of the parameters after every step (tests of DDP)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> "TrainConfig":
        """Every value checked before any work: a bad one is a ConfigError naming it and the fix."""
        for key in ("steps", "batch_size", "log_every", "save_every"):
            _at_least(key, getattr(self, key), 1)
        _at_least("val_every", self.val_every, 0)
        self.data.validate()
        self.optim.validate()
        if not math.isfinite(self.metric_head) or self.metric_head < 0:
            raise ConfigError(f"metric_head={self.metric_head!r} must be a depth cap in metres (e.g. 20 indoors, 80 "
                              "outdoors), or 0 to keep the model's head")
        choose(LOSSES, self.loss, "loss")
        choose(PRECISIONS, self.precision, "precision")
        check_loss_unit(self.loss, self.model_to_train())
        return self

    def model_to_train(self) -> ModelConfig:
        """The architecture this recipe trains: ``model_config`` or the registered ``model``, with
        a metric head when ``metric_head`` > 0."""
        config = self.model_config or get_config(self.model)
        return config.with_metric_head(self.metric_head) if self.metric_head > 0 else config

    def to_dict(self) -> dict:
        return to_plain(dataclasses.asdict(self))


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr_vit=1e-5)")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a table")
        node[parts[-1]] = _parse_value(value.strip())
    return data


def load_train_config(path: Optional[str | Path], overrides: Sequence[str] = ()) -> TrainConfig:
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p} is not valid TOML: {e}") from None
    data = apply_overrides(data, overrides)
    config = from_dict(TrainConfig, data)
    return config.validate()
