"""Converters from the paper's datasets, in their native layouts, to sequence folders.

Each converter does all dataset-specific decoding (file formats, units, sky and invalid rules),
writes ``<dst>/<dataset>/dataset.json`` with the official FlashDepth splits, and returns a report
(sequences, frames, invalid and sky fractions). Where the official loaders have bugs
(``shared/spec/datasets.md`` section 4) the converters do not copy them; see ``docs/datasets.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...errors import FlashDepthError
from .testsets import convert_eth3d, convert_sintel, convert_unreal4k, convert_urbansyn, convert_waymo
from .trainsets import (convert_dynamic_replica, convert_mvs_synth, convert_pointodyssey, convert_spring,
                        convert_tartanair)

CONVERTERS: dict[str, Callable[[Path, Path], dict]] = {
    "mvs-synth": convert_mvs_synth,
    "spring": convert_spring,
    "dynamicreplica": convert_dynamic_replica,
    "tartanair": convert_tartanair,
    "pointodyssey": convert_pointodyssey,
    "sintel": convert_sintel,
    "eth3d": convert_eth3d,
    "waymo": convert_waymo,
    "unreal4k": convert_unreal4k,
    "urbansyn": convert_urbansyn,
}


def convert(name: str, src: str | Path, dst: str | Path) -> dict:
    if name not in CONVERTERS:
        raise FlashDepthError(f"no converter for {name!r}; available: {', '.join(CONVERTERS)}")
    src = Path(src)
    if not src.is_dir():
        raise FlashDepthError(f"source folder {src} does not exist")
    return CONVERTERS[name](src, Path(dst))
