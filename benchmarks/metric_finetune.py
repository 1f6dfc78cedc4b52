"""Fine-tuning the bundled tiny model to metres on the synthetic world: the run and its before/after.

    python benchmarks/metric_finetune.py train --data tiny/data --workdir tiny/metric --steps 50
    python benchmarks/metric_finetune.py eval --data tiny/data --workdir tiny/metric --json tiny/metric/scores.json

``train`` runs configs/finetune-metric.toml (a metric head of 80 m, SILog) from the bundled
``flashdepth-tiny-synthetic`` on the ``varied`` family's train split (rendered with
``flashdepth synth DATA --name varied --preset varied --split train=0:240 --split test=1000:1016``),
resuming from the last checkpoint in ``WORKDIR/runs/finetune-metric-tiny`` when there is one.
``eval`` scores, on the held-out test split with no alignment at all (the metric protocol,
``--alignment none``): the bundled relative model read as metres the package's way (100 / output),
with ``--with-start`` the same weights with the metric head refitted from the relative one before
any training (the fine-tune's starting point), and the last fine-tuned checkpoint. Docs: docs/metric.md,
"Fine-tuning to metres".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "finetune-metric.toml"
RUN = "runs/finetune-metric-tiny"
MODEL = "flashdepth-tiny-synthetic"
# what the recipe's FlashDepth-S settings become for the tiny model on a 2-core CPU: its frame size,
# fp32, 3-frame clips, and learning rates for a run of tens of steps (what a shared 2-core CPU allows)
TINY = ["model=" + MODEL, 'data.datasets=["varied"]', 'data.val_datasets=["varied"]', "data.val_preset=native",
        "data.crop_size=[126, 224]", "data.num_workers=1", "grad_checkpointing=false", "precision=fp32",
        "batch_size=4", "data.clip_length=3", "log_every=5", "save_every=25", "val_every=0", "optim.lr_vit=5e-5",
        "optim.lr_dpt=3e-4", "optim.lr_temporal=1e-4", "optim.warmup_steps=10"]


def train(data: Path, work: Path, steps: int) -> None:
    from flashdepth.inference.weights import bundled_weights

    overrides = TINY + [f"init={bundled_weights(MODEL)}", f"data.root={data.resolve()}", f"steps={steps}",
                        f"out_dir={RUN}"]
    found = sorted((work / RUN).glob("step_*.pth"))
    resume = ["--resume", str(found[-1])] if found else []
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "flashdepth_cli", "train", str(RECIPE), *overrides, *resume],
                   cwd=work, check=True)


def starting_point():
    """The bundled model with a metric head refitted from its relative head, before any step."""
    from flashdepth.inference.registry import get_config
    from flashdepth.inference.weights import bundled_weights, model_from_checkpoint
    from flashdepth.train import load_train_config, metric_head_from_relative

    cap = load_train_config(RECIPE).metric_head
    model = model_from_checkpoint(bundled_weights(MODEL), get_config(MODEL).with_metric_head(cap))
    return metric_head_from_relative(model).requires_grad_(False).eval()


def evaluate(data: Path, work: Path, split: str, max_frames: int | None, with_start: bool) -> list[dict]:
    from flashdepth.apps.evaluate import EvalOptions, evaluate_corpus
    from flashdepth.data.sequence import DatasetFolder
    from flashdepth.inference.weights import load_model

    sequences = DatasetFolder(data / "varied").sequences(split)
    last = sorted((work / RUN).glob("step_*.pth"))[-1]
    models = {"before (relative, 100 / output)": load_model(MODEL),
              **({"metric head at step 0": starting_point()} if with_start else {}),
              f"after ({last.stem})": load_model(last)}
    opts = EvalOptions(alignment="none", max_frames=max_frames)
    rows = []
    for name, model in models.items():
        summary = evaluate_corpus(model, sequences, opts, device="cpu").summary[0]
        rows.append({"model": name, "unit": model.config.unit.name, **{k: summary[k] for k in (
            "sequences", "abs_rel", "delta1", "rmse", "silog")}})
        print(f"| {name} | {model.config.unit.name} | {summary['abs_rel']:.3f} | {summary['delta1']:.3f} | "
              f"{summary['rmse']:.2f} | {summary['silog']:.3f} |", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=("train", "eval"))
    p.add_argument("--data", type=Path, required=True, help="the data root holding varied/")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--split", default="test")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--with-start", action="store_true", help="also score the refitted head before any step")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.stage == "train":
        train(args.data, args.workdir, args.steps)
        return
    print("| model | unit | AbsRel | delta1 | RMSE (m) | SILog |\n|---|---|---|---|---|---|")
    rows = evaluate(args.data, args.workdir, args.split, args.max_frames, args.with_start)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
