"""`flashdepth train`: one training recipe, alone or under torchrun."""

from __future__ import annotations

import argparse

HELP = "train a model from a TOML recipe; runs alone or under torchrun"
DESCRIPTION = """\
Train as a recipe in configs/ says (stage 1: FlashDepth-S or -L from Depth Anything V2 on 5-frame
clips; stage 2: the Full model's student and fusion with a frozen teacher). KEY=VALUE overrides
any entry of the recipe. The same command runs on one process or on many under torchrun (NCCL
on GPUs, gloo on CPU); --resume continues exactly where a checkpoint stopped. See docs/training.md."""
EXAMPLES = """\
  flashdepth train configs/stage1-s.toml
  flashdepth train configs/stage1-s.toml steps=2000 batch_size=2 optim.lr_vit=1e-5
  flashdepth train configs/stage1-s.toml --resume runs/stage1-s/step_0001000.pth
  torchrun --nproc_per_node 8 -m flashdepth_cli train configs/stage1-s.toml"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML recipe, e.g. configs/stage1-s.toml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. steps=2000 optim.lr_vit=1e-5")
    p.add_argument("--resume", help="continue from a checkpoint written by a previous run")


def main(args: argparse.Namespace) -> int:
    from ..training import train

    return train(args.config, args.overrides, args.resume)
