"""`flashdepth synth`: render procedural video clips with exact depth into a sequence folder."""

from __future__ import annotations

import argparse
import json

HELP = "render synthetic video clips with exact depth (training and test data)"
DESCRIPTION = """\
Render procedural scenes (flashdepth.data.synthetic; docs/synthetic.md) into
DATA_ROOT/<name>/ in the sequence-folder format, with exact metric depth, intrinsics and camera
poses. Each clip is a deterministic function of its seed and the scene options, so a seed range
names a dataset exactly. Splits are given as SPLIT=FIRST:END (seeds FIRST..END-1). Prints a JSON
report: sequences, frames, sky fraction."""
EXAMPLES = """\
  flashdepth synth data --split train=0:160 --split val=5000:5004 --kinds box pole wall mover
  flashdepth synth data --name synthetic-spheres --split test=9000:9016 --kinds sphere mover wall
  flashdepth eval --data data/synthetic --split val --model flashdepth-tiny-synthetic"""


def _split(text: str) -> tuple[str, range]:
    from flashdepth_cli.common import UsageError

    name, sep, seeds = text.partition("=")
    first, colon, end = seeds.partition(":")
    if not sep or not colon or not first.isdigit() or not end.isdigit() or int(end) <= int(first) or not name:
        raise UsageError(f"--split {text!r}: write SPLIT=FIRST:END with 0 <= FIRST < END, e.g. train=0:160")
    from flashdepth.data.synthetic.dataset import MAX_CLIPS, MAX_SEED

    if int(end) > MAX_SEED or int(end) - int(first) > MAX_CLIPS:  # before any range is built
        raise UsageError(f"--split {text!r}: at most {MAX_CLIPS} clips per split and seeds below {MAX_SEED}")
    return name, range(int(first), int(end))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from flashdepth.data.synthetic import KINDS, PRESETS, TEXTURES

    p.add_argument("output", metavar="DATA_ROOT", help="data root; clips are written to DATA_ROOT/<name>/")
    p.add_argument("--name", default="synthetic", help="dataset folder name (default: synthetic)")
    p.add_argument("--split", action="append", required=True, metavar="SPLIT=FIRST:END",
                   help="a split and its seed range, e.g. train=0:160 (repeatable)")
    p.add_argument("--preset", choices=list(PRESETS), default="classic",
                   help="family of scenes: " + "; ".join(f"{k}: {' '.join(v.kinds)}" for k, v in PRESETS.items())
                   + " (default: classic)")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=None,
                   help="object kinds a scene may contain (the layout family; default: the preset's)")
    p.add_argument("--textures", nargs="+", choices=TEXTURES, default=None,
                   help="surface textures (default: the preset's)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the preset's; 24 for most)")
    p.add_argument("--size", default=None, metavar="HxW", help="frame size (default: the preset's, 126x224)")


def main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from flashdepth.data.synthetic import PRESETS, write_synthetic_dataset
    from flashdepth_cli.common import UsageError

    preset = PRESETS[args.preset]
    try:
        height, width = ((int(v) for v in args.size.lower().split("x")) if args.size
                         else (preset.height, preset.width))
    except ValueError:
        raise UsageError(f"--size {args.size!r}: write HxW, e.g. 126x224") from None
    seeds: dict[str, range] = {}
    for text in args.split:
        name, seed_range = _split(text)
        if name in seeds:
            raise UsageError(f"--split {name}=... is given twice; give each split once")
        seeds[name] = seed_range
    config = replace(preset, height=height, width=width, frames=preset.frames if args.frames is None else args.frames,
                     kinds=tuple(args.kinds) if args.kinds else preset.kinds,
                     textures=tuple(args.textures) if args.textures else preset.textures)
    print(json.dumps(write_synthetic_dataset(args.output, seeds, config, name=args.name)))
    return 0
