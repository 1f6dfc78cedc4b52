"""`flashdepth models`: the model table."""

from __future__ import annotations

import argparse

HELP = "list the model variants and where their weights come from"
DESCRIPTION = ("The registered models: a description, what they output (relative inverse depth or metres), the "
               "licence of their weights where the publisher states one, and the file the weights come from.")
EXAMPLES = """\
  flashdepth models
  flashdepth run video.mp4 -o out/ --model flashdepth-s"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    from flashdepth.inference.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        unit = spec.config.unit
        licence = f", weights {spec.license}" if spec.license else ""
        print(f"{name:38s} {spec.description}  (output: {unit.symbol}{licence})  [{spec.weights.location}]")
    return 0
