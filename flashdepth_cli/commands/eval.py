"""`flashdepth eval`: score models on sequence folders with the paper's protocol."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flashdepth.config import EVAL_PRESETS
from flashdepth.geometry import DEFAULT_MAX_DEPTH
from flashdepth.metrics import METRICS

from ..common import UsageError, add_device_options

HELP = "score models on sequence folders (the paper's protocol)"
DESCRIPTION = """\
Stream every sequence of the datasets through each model (a fresh stream per sequence, at the
dataset's evaluation size for the model's preset), fit one scale and shift per sequence in
disparity space, and report per sequence and per dataset. Data must be in the flashdepth
sequence-folder format (`flashdepth convert`). Protocol and how to reproduce the paper's table:
docs/evaluation.md.

metrics:
""" + "\n".join(f"  {m.name:12s} {m.description} ({'higher' if m.higher_is_better else 'lower'} is better)"
                for m in METRICS.values())
EXAMPLES = """\
  flashdepth eval --data data/sintel data/waymo --model flashdepth-s flashdepth-l
  flashdepth eval --data data/sintel --model mine=runs/stage1-s/step_0015000.pth flashdepth-s --json scores.json
  flashdepth eval --data data/unreal4k --model flashdepth --preset 2k --max-frames 50"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="FOLDER",
                   help="dataset folders (with dataset.json) or sequence folders (with sequence.json)")
    p.add_argument("--model", nargs="+", required=True, metavar="NAME[=CHECKPOINT]",
                   help="one or more models, side by side; NAME=PATH uses that weights file")
    p.add_argument("--checkpoint", help="weights file for a single --model")
    p.add_argument("--split", default="test", help="split of dataset.json to score (default test)")
    p.add_argument("--preset", choices=EVAL_PRESETS, help="evaluation resolution (default: the model's own, 2k for flashdepth)")
    p.add_argument("--max-depth", type=float, default=DEFAULT_MAX_DEPTH,
                   help=f"depth cap in the fit and the metrics, metres (default {DEFAULT_MAX_DEPTH:g})")
    p.add_argument("--dataset-max-depth", action="append", default=[], metavar="DATASET=VALUE",
                   help="per-dataset depth cap, e.g. sintel=70")
    p.add_argument("--per-frame-align", action="store_true", help="fit scale and shift per frame, not per sequence")
    p.add_argument("--max-frames", type=int, help="score at most this many frames of each sequence")
    p.add_argument("--json", help="write one record per model and sequence to this file")
    add_device_options(p)


def _targets(paths: list[str], split: str):
    from flashdepth.data.sequence import DatasetFolder, SequenceFolder

    sequences = []
    for p in paths:
        path = Path(p)
        if (path / "dataset.json").is_file():
            sequences += DatasetFolder(path).sequences(split)
        elif (path / "sequence.json").is_file():
            sequences.append(SequenceFolder(path))
        else:
            raise UsageError(f"{path} is neither a dataset folder (dataset.json) nor a sequence folder (sequence.json); "
                             "convert the data with `flashdepth convert` first")
    if not sequences:
        raise UsageError(f"no sequences in split {split!r} of {', '.join(paths)}")
    return sequences


def main(args: argparse.Namespace) -> int:
    from flashdepth.evaluate import EvalOptions, evaluate_sequence, markdown_table, summarize
    from flashdepth.registry import list_models
    from flashdepth.session import DepthSession
    from flashdepth.weights import load_model

    caps = {}
    for item in args.dataset_max_depth:
        name, _, value = item.partition("=")
        try:
            caps[name] = float(value)
        except ValueError:
            raise UsageError(f"--dataset-max-depth {item!r}: expected DATASET=NUMBER") from None
    specs = []
    for item in args.model:
        name, _, path = item.partition("=")
        specs.append((name, path or (args.checkpoint if len(args.model) == 1 else None)))
    sequences = _targets(args.data, args.split)
    records = []
    for name, path in specs:
        model = load_model(path or name, variant=name if name in list_models() else None)
        session = DepthSession(model, device=args.device, precision=args.precision)
        for seq in sequences:
            opts = EvalOptions(preset=args.preset, max_depth=caps.get(seq.dataset, args.max_depth),
                               per_frame=args.per_frame_align, max_frames=args.max_frames)
            record = {"model": name, "dataset": seq.dataset, "sequence": seq.name, **evaluate_sequence(session, seq, opts)}
            records.append(record)
            print(f"{name} {seq.dataset}/{seq.name}: AbsRel {record['abs_rel']:.4f} delta1 {record['delta1']:.4f}",
                  file=sys.stderr)
    print("## Per sequence\n")
    print(markdown_table(records, ["model", "dataset", "sequence", "frames", *METRICS]))
    print("\n## Per dataset (mean over sequences)\n")
    print(markdown_table(summarize(records), ["model", "dataset", "sequences", "frames", *METRICS]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0
