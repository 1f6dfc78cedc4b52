"""`flashdepth eval`: score models on sequence folders with the paper's protocol."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flashdepth.config import EVAL_PRESETS
from flashdepth.geometry import DEFAULT_MAX_DEPTH
from flashdepth.metrics import ALIGNMENTS, DEFAULT_ALIGNMENT, METRICS
from flashdepth.metrics.predictions import PREDICTION_KINDS

from ..common import UsageError, add_device_options

HELP = "score models on sequence folders (the paper's protocol)"
DESCRIPTION = """\
Stream every sequence of the datasets through each model (a fresh stream per sequence, at the
dataset's evaluation size for the model's preset), fit one scale and shift per sequence in
disparity space (--alignment: or a scale only, or none for metric models), and report per
sequence and per dataset; --predictions scores saved outputs of other methods the same way. Data must be in the flashdepth
sequence-folder format (`flashdepth convert`). Protocol and how to reproduce the paper's table:
docs/evaluation.md.

metrics:
""" + "\n".join(f"  {m.name:12s} {m.description} ({'higher' if m.higher_is_better else 'lower'} is better)"
                for m in METRICS.values())
EXAMPLES = """\
  flashdepth eval --data data/sintel data/waymo --model flashdepth-s flashdepth-l
  flashdepth eval --data data/sintel --model mine=runs/stage1-s/step_0015000.pth flashdepth-s --json scores.json
  flashdepth eval --data data/unreal4k --model flashdepth --preset 2k --max-frames 50
  flashdepth eval --data data/kitti --predictions metric3d=preds/m3d --predictions-kind depth --alignment none
  flashdepth eval --data data/sintel --model flashdepth-s --predictions depthcrafter=preds/dc --predictions-kind disparity"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="FOLDER",
                   help="dataset folders (with dataset.json) or sequence folders (with sequence.json)")
    p.add_argument("--model", nargs="+", default=[], metavar="NAME[=CHECKPOINT]",
                   help="one or more models, side by side; NAME=PATH uses that weights file")
    p.add_argument("--predictions", nargs="+", default=[], metavar="[NAME=]DIR",
                   help="score the saved outputs of another method instead of (or beside) --model: DIR/DATASET/"
                        "SEQUENCE.npy (frames, height, width) or DIR/DATASET/SEQUENCE/*.npy one per frame, at the "
                        "ground truth's size (the DATASET level may be left out); needs --predictions-kind")
    p.add_argument("--predictions-kind", choices=list(PREDICTION_KINDS),
                   help="what the --predictions values are: " + "; ".join(
                       f"{k.name}: {k.description}" for k in PREDICTION_KINDS.values()))
    p.add_argument("--checkpoint", help="weights file for a single --model")
    p.add_argument("--split", default="test", help="split of dataset.json to score (default test)")
    p.add_argument("--preset", choices=EVAL_PRESETS,
                   help="evaluation resolution of --model (default: the model's own, 2k for flashdepth)")
    p.add_argument("--max-depth", type=float, default=DEFAULT_MAX_DEPTH,
                   help=f"depth cap in the fit and the metrics, metres (default {DEFAULT_MAX_DEPTH:g})")
    p.add_argument("--dataset-max-depth", action="append", default=[], metavar="DATASET=VALUE",
                   help="per-dataset depth cap, e.g. sintel=70")
    p.add_argument("--alignment", choices=list(ALIGNMENTS), default=DEFAULT_ALIGNMENT,
                   help=f"how predictions are aligned before scoring (default {DEFAULT_ALIGNMENT}): " + "; ".join(
                       f"{a.name}: {a.description}" for a in ALIGNMENTS.values()))
    p.add_argument("--per-frame-align", action="store_true", help="fit the alignment per frame, not per sequence")
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


def _caps(args: argparse.Namespace) -> dict:
    """--dataset-max-depth DATASET=VALUE items -> {dataset: metres}, every cap positive."""
    if not args.max_depth > 0:
        raise UsageError(f"--max-depth {args.max_depth:g}: give a positive distance in metres "
                         f"(default {DEFAULT_MAX_DEPTH:g})")
    caps = {}
    for item in args.dataset_max_depth:
        name, _, value = item.partition("=")
        try:
            caps[name] = float(value)
        except ValueError:
            raise UsageError(f"--dataset-max-depth {item!r}: expected DATASET=NUMBER") from None
        if not caps[name] > 0:
            raise UsageError(f"--dataset-max-depth {item!r}: give a positive distance in metres")
    return caps


def _check_writable(path: Path) -> None:
    """Fail before the evaluation, not after it, when the --json file cannot be written."""
    import tempfile

    if path.is_dir():
        raise UsageError(f"--json {path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as e:
        raise UsageError(f"--json {path}: cannot write there ({e.strerror or e}); give a writable path") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"--json {path}: the file is not writable; give a writable path")


def _write_json(path: Path, records: list) -> None:
    """Replace the file in one step, so that a failure leaves the old scores whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, path)


def _progress(row: dict) -> None:
    if row["abs_rel"] is None:
        scores = "no valid pixels under the depth cap (scores missing)"
    else:
        scores = f"AbsRel {row['abs_rel']:.4f} delta1 {row['delta1']:.4f}"
    print(f"{row['model']} {row['dataset']}/{row['sequence']}: {scores}", file=sys.stderr)


def _prediction_folders(args: argparse.Namespace) -> list:
    """--predictions [NAME=]DIR items -> [(name, PredictionFolder)]."""
    from flashdepth.metrics.predictions import PredictionFolder

    if not args.model and not args.predictions:
        raise UsageError("nothing to score: give --model NAME (a model to run) and/or --predictions DIR (saved outputs)")
    if args.predictions and args.predictions_kind is None:
        raise UsageError("--predictions needs --predictions-kind depth or disparity: say what the saved values are")
    if args.predictions_kind is not None and not args.predictions:
        raise UsageError("--predictions-kind applies to --predictions only; give --predictions DIR")
    if args.preset is not None and not args.model:
        raise UsageError("--preset sets the resolution --model runs at; saved --predictions are scored at the "
                         "ground truth's size, so leave --preset out")
    folders = []
    for item in args.predictions:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name, item
        folders.append((name, PredictionFolder(path, args.predictions_kind)))
    return folders


def main(args: argparse.Namespace) -> int:
    import dataclasses

    from flashdepth.apps.evaluate import (EvalOptions, check_sequence, evaluate_corpus, evaluate_predictions,
                                     markdown_table, summarize)
    from flashdepth.inference.registry import list_models
    from flashdepth.inference.weights import load_model

    caps = _caps(args)
    folders = _prediction_folders(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames {args.max_frames}: give a number of frames, 1 or more")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_writable(json_path)
    opts = EvalOptions(preset=args.preset, max_depth=args.max_depth, per_frame=args.per_frame_align,
                       max_frames=args.max_frames, dataset_max_depth=caps, alignment=args.alignment)
    specs = []
    for item in args.model:
        name, _, path = item.partition("=")
        specs.append((name, path or (args.checkpoint if len(args.model) == 1 else None)))
    sequences = _targets(args.data, args.split)
    for seq in sequences:
        check_sequence(seq)  # before any model is loaded
        for _, folder in folders:
            folder.open(seq)  # frame counts and sizes too
    records = []
    for name, path in specs:
        model = load_model(path or name, variant=name if name in list_models() else None)
        records += evaluate_corpus(model, sequences, opts, device=args.device, precision=args.precision, name=name,
                                   on_row=_progress).rows
    for name, folder in folders:
        records += evaluate_predictions(folder, sequences, dataclasses.replace(opts, preset=None), name=name,
                                        on_row=_progress).rows
    print("## Per sequence\n")
    print(markdown_table(records, ["model", "dataset", "sequence", "frames", *METRICS]))
    print("\n## Per dataset (mean over sequences)\n")
    print(markdown_table(summarize(records), ["model", "dataset", "sequences", "frames", *METRICS]))
    if json_path is not None:
        _write_json(json_path, records)
    return 0
