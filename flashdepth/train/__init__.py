"""Training pieces that are plain library code: configs, the clip dataset, the loss module,
parameter groups and the schedule. The process-level loop (DDP, torchrun) is in
``flashdepth_cli.train``."""

from .config import DataConfig, OptimConfig, TrainConfig, load_train_config
from .data import ClipDataset
from .loss import DepthLoss
from .setup import build_model, build_optimizer, frozen_by_design, warmup_schedule

__all__ = ["ClipDataset", "DataConfig", "DepthLoss", "OptimConfig", "TrainConfig", "build_model",
           "build_optimizer", "frozen_by_design", "load_train_config", "warmup_schedule"]
