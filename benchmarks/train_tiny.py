"""A tiny end-to-end training run on CPU: fabricated data, a small FlashDepth-S-shaped model.

Prints the loss curve and steps per second of `flashdepth train` (one process), so the whole
training path (sequence folders, clips, DDP-ready loss module, optimiser groups, checkpoints)
can be timed on any machine:

    python benchmarks/train_tiny.py [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def fabricate(root: Path) -> None:
    from flashdepth.data.sequence import DepthSpec, SequenceWriter, write_dataset_json

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:140, 0:196]
    names = []
    for s in range(4):
        w = SequenceWriter(root / "toy", "toy", f"seq{s}", DepthSpec(kind="depth", unit="m"))
        for t in range(12):
            depth = 2.0 + 3.0 * (((xx + 4 * t + 30 * s) // 28 + yy // 28) % 3)  # moving blocks at 3 depths
            image = (np.stack([depth * 30, 255 - depth * 20, (xx + t) % 256], -1) + rng.normal(0, 8, (140, 196, 3)))
            w.add(np.clip(image, 0, 255).astype(np.uint8), depth.astype(np.float32))
        w.close()
        names.append(f"seq{s}")
    write_dataset_json(root / "toy", "toy", {"train": names, "val": names[:1]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    import torch

    import flashdepth
    from flashdepth import DPTConfig, ModelConfig, TemporalConfig, ViTConfig
    from flashdepth.inference.weights import save_checkpoint

    config = ModelConfig(name="tiny-s", vit=ViTConfig(embed_dim=64, depth=4, num_heads=2, layer_indices=(0, 1, 2, 3)),
                         dpt=DPTConfig(features=32, out_channels=(16, 32, 64, 64)),
                         temporal=TemporalConfig(num_blocks=2, d_state=16, expand=2, headdim=16, chunk_size=64))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fabricate(tmp / "data")
        torch.manual_seed(0)
        model = flashdepth.FlashDepth(config)
        with torch.no_grad():
            model.depth_head.scratch.output_conv2[2].bias.fill_(20.0)  # a live head, as a pretrained one is
        init = save_checkpoint(model, tmp / "init.pth")
        tables = "\n".join(f"[model_config.{k}]\n" + "\n".join(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
                           for k, v in config.to_dict().items() if isinstance(v, dict))
        (tmp / "tiny.toml").write_text(f"""
init = "{init}"
steps = {args.steps}
batch_size = 2
log_every = 5
val_every = 0
save_every = 0
out_dir = "{tmp / 'run'}"
[data]
root = "{tmp / 'data'}"
datasets = ["toy"]
clip_length = 5
crop_size = [112, 140]
num_workers = 0
[optim]
warmup_steps = 10
lr_vit = 2e-4
lr_dpt = 1e-3
lr_temporal = 1e-3
[model_config]
name = "tiny-s"
{tables}
""")
        result = subprocess.run([sys.executable, "-m", "flashdepth_cli", "train", str(tmp / "tiny.toml")],
                                capture_output=True, text=True, check=True)
    print(result.stdout.strip())
    losses = [float(m) for m in re.findall(r"loss ([0-9.]+)", result.stdout)]
    rate = re.findall(r"([0-9.]+) steps/s", result.stdout)[-1]
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {args.steps} steps; {rate} steps/s on this machine")


if __name__ == "__main__":
    main()
