"""`flashdepth models`: the model table."""

from __future__ import annotations

import argparse

HELP = "list the model variants and where their weights come from"
DESCRIPTION = "The registered models, with a description and the file their weights are downloaded from."
EXAMPLES = """\
  flashdepth models
  flashdepth run video.mp4 -o out/ --model flashdepth-s"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    from flashdepth.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:26s} {spec.description}  [{spec.weights.location}]")
    return 0
