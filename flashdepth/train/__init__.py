"""Training as library code: configs, the clip dataset, the loss module, parameter groups, the
schedule and the loop itself, :func:`fit` (one process, or one of many described by a
:class:`World`). The command line (``flashdepth train``, under torchrun or alone) only joins the
process group and calls :func:`fit`."""

from .config import DataConfig, OptimConfig, TrainConfig, load_train_config
from .data import ClipDataset
from .loop import fit, validate
from .loss import DepthLoss
from .setup import build_model, build_optimizer, frozen_by_design, metric_head_from_relative, warmup_schedule
from .world import World

__all__ = ["ClipDataset", "DataConfig", "DepthLoss", "OptimConfig", "TrainConfig", "World", "build_model",
           "build_optimizer", "fit", "frozen_by_design", "load_train_config", "metric_head_from_relative", "validate",
           "warmup_schedule"]
