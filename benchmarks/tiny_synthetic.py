"""flashdepth-tiny-synthetic end to end: data, the two training runs, and the evidence.

One command reproduces the bundled demonstration model and every figure of
docs/tiny-synthetic.md (about 55 minutes on a 2-core CPU: both runs train at once, one thread
each):

    python benchmarks/tiny_synthetic.py all --workdir tiny/ --json tiny/evidence.json

Stages (each skips what already exists in the work folder):

* ``synth``: the training family (no spheres) with train / val / held-out test seeds, and a
  held-out family with spheres (``flashdepth synth``);
* ``train``: configs/tiny-synthetic.toml (the model) and configs/tiny-synthetic-perframe.toml
  (the same budget without the temporal module), side by side: 3000 steps at a constant rate,
  then a cool-down of 1000 steps from that checkpoint with the rate decaying to 0 (cosine);
* ``eval``: on the held-out test clips of both families, scored with the evaluation protocol:
  the trained model with its state carried, the same weights with the state reset every frame,
  the same architecture at initialisation, and the per-frame baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN_KINDS = ["box", "pole", "wall", "mover"]
SYNTH = [
    ["synthetic", ["train=0:200", "val=5000:5004", "test=1000:1016"], TRAIN_KINDS],
    ["synthetic-spheres", ["test=9000:9016"], ["sphere", "mover", "wall", "pole"]],
]
RUNS = {"temporal": "configs/tiny-synthetic.toml", "perframe": "configs/tiny-synthetic-perframe.toml"}
COOLDOWN_STEPS = 1000


def cooldown_overrides(work: Path, recipe: str) -> list[str]:
    """Phase 2: from the last checkpoint of the recipe, the same data and rate decaying to 0."""
    from flashdepth.train import load_train_config

    out = load_train_config(REPO / recipe).out_dir
    return [f"init={_last_checkpoint(work, recipe, out)}", f"steps={COOLDOWN_STEPS}", "optim.schedule=cosine",
            "optim.warmup_steps=0", f"out_dir={out}-cooldown", f"save_every={COOLDOWN_STEPS}"]
METRICS = ("abs_rel", "delta1", "boundary_f1", "scale_std", "tae")


def synth(work: Path) -> None:
    for name, splits, kinds in SYNTH:
        if (work / "data" / name / "dataset.json").is_file():
            continue
        args = ["data", "--name", name, "--kinds", *kinds]
        for split in splits:
            args += ["--split", split]
        subprocess.run([sys.executable, "-m", "flashdepth_cli", "synth", *args], cwd=work, check=True)


def train(work: Path) -> None:
    from flashdepth.train import load_train_config

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # two runs share the cores
    for phase in ("main", "cooldown"):
        procs = []
        for name, recipe in RUNS.items():
            config = load_train_config(REPO / recipe)
            if phase == "main":
                last, extra = work / config.out_dir / f"step_{config.steps:07d}.pth", []
            else:
                last = work / f"{config.out_dir}-cooldown" / f"step_{COOLDOWN_STEPS:07d}.pth"
                extra = cooldown_overrides(work, recipe)
            if last.is_file():
                continue  # this phase of this run is done
            log = open(work / f"train_{name}.log", "a")
            procs.append(subprocess.Popen([sys.executable, "-m", "flashdepth_cli", "train", str(REPO / recipe), *extra],
                                          cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT))
        if any(p.wait() for p in procs):
            raise SystemExit(f"a training run failed; see {work}/train_*.log")


def _last_checkpoint(work: Path, recipe: str, out_dir: str | None = None) -> Path:
    """The last checkpoint of ``recipe`` (of its cool-down when that has run)."""
    from flashdepth.train import load_train_config

    if out_dir is None:
        base = load_train_config(REPO / recipe).out_dir
        out_dir = base + "-cooldown" if list((work / f"{base}-cooldown").glob("step_*.pth")) else base
    out = work / out_dir
    found = sorted(out.glob("step_*.pth"))
    if not found:
        raise SystemExit(f"no checkpoint in {out}: run the train stage first")
    return found[-1]


class ResetEachFrame:
    """The same weights with the stream restarted at every frame (no temporal context)."""

    def __init__(self, model):
        self.model, self.config = model, model.config

    def min_input_size(self) -> int:
        return self.model.min_input_size()

    def __call__(self, frame, state=None):
        return self.model(frame, None)


def evaluate(work: Path, temporal: Path, perframe: Path) -> list[dict]:
    import torch

    from flashdepth import FlashDepth, load_model
    from flashdepth.data.sequence import DatasetFolder
    from flashdepth.evaluate import EvalOptions, evaluate_sequence
    from flashdepth.session import DepthSession

    trained = load_model(temporal)
    torch.manual_seed(0)
    models = {
        "trained, state carried": trained,
        "trained, state reset every frame": ResetEachFrame(trained),
        "at initialisation": FlashDepth(trained.config).eval().requires_grad_(False),
        "per-frame baseline": load_model(perframe),
    }
    rows = []
    for dataset in ("synthetic", "synthetic-spheres"):
        sequences = DatasetFolder(work / "data" / dataset).sequences("test")
        for label, model in models.items():
            session = DepthSession(model, device="cpu")
            results = [evaluate_sequence(session, seq, EvalOptions()) for seq in sequences]
            row = {"dataset": dataset, "model": label, "sequences": len(results)}
            for m in METRICS:
                values = [r[m] for r in results if r[m] is not None]
                row[m] = sum(values) / len(values) if values else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| test clips | model | AbsRel | delta1 | boundary F1 | scale_std | TAE |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | " + " | ".join(f"{r[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["synth", "train", "eval", "all"])
    p.add_argument("--workdir", default="tiny", help="data/ and runs/ are made here (default: tiny)")
    p.add_argument("--temporal", help="checkpoint of the temporal run (default: its last one)")
    p.add_argument("--perframe", help="checkpoint of the per-frame run (default: its last one)")
    p.add_argument("--json", help="write the evaluation rows here")
    args = p.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("synth", "all"):
        synth(work)
    if args.stage in ("train", "all"):
        train(work)
    if args.stage in ("eval", "all"):
        temporal = Path(args.temporal) if args.temporal else _last_checkpoint(work, RUNS["temporal"])
        perframe = Path(args.perframe) if args.perframe else _last_checkpoint(work, RUNS["perframe"])
        rows = evaluate(work, temporal, perframe)
        print(table(rows))
        if args.json:
            Path(args.json).write_text(json.dumps({"temporal": str(temporal), "perframe": str(perframe),
                                                   "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
