"""`flashdepth convert`: a dataset from its native layout to sequence folders."""

from __future__ import annotations

import argparse
import json

from flashdepth.data.datasets import DATASETS

HELP = "convert a dataset from its native layout to sequence folders"
DESCRIPTION = """\
Read DATASET in its native layout from SOURCE and write it to DATA_ROOT/<dataset>/ in the
flashdepth sequence-folder format (docs/datasets.md), with the official splits. Prints a JSON
report: sequences, frames, invalid and sky fractions.

datasets:
""" + "\n".join(f"  {d.name:15s} {d.description} ({d.used_for})" for d in DATASETS.values())
EXAMPLES = """\
  flashdepth convert sintel ~/downloads/MPI-Sintel-complete data/
  flashdepth convert spring ~/downloads/spring data/
  flashdepth eval --data data/sintel --model flashdepth-s        # then score on it"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=list(DATASETS), metavar="DATASET", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("source", help="the dataset's folder in its native layout")
    p.add_argument("output", metavar="DATA_ROOT", help="data root; the dataset is written to DATA_ROOT/<dataset>/")


def main(args: argparse.Namespace) -> int:
    from flashdepth.data.datasets import convert

    print(json.dumps(convert(args.dataset, args.source, args.output)))
    return 0
