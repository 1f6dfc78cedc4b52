"""Numerical kernels, each a pure-PyTorch reference beside a fast path.

| op          | fast path                                        | reference                     |
| ----------- | ------------------------------------------------ | ----------------------------- |
| attention   | ``F.scaled_dot_product_attention``               | :func:`attention_reference`   |
| ssd         | ``mamba_ssm``'s Triton kernel (CUDA, installed)  | :func:`ssd_scan_reference`    |
| channels_last | the DPT's convolutions in NHWC memory format   | the same ops in NCHW          |

Which path a module runs is decided when it is built: modules copy :func:`fast_paths` into an
attribute (``fused``), and ``FlashDepth.set_fast_paths`` changes it on a built model. Nothing
reads the environment per call. ``FLASHDEPTH_REFERENCE`` (``1``/``all``, or a comma list of op
names) sets the process-wide default once, at import.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

from ..errors import UnknownNameError

FAST_PATHS = ("attention", "ssd", "channels_last")


def _from_environment() -> dict[str, bool]:
    value = os.environ.get("FLASHDEPTH_REFERENCE", "").strip().lower()
    if value in ("", "0", "false", "no"):
        forced: set[str] = set()
    elif value in ("1", "all", "true", "yes"):
        forced = set(FAST_PATHS)
    else:
        forced = {v.strip() for v in value.split(",") if v.strip()}
        for name in forced:
            if name not in FAST_PATHS:
                raise UnknownNameError("fast path (in FLASHDEPTH_REFERENCE)", name, FAST_PATHS)
    return {op: op not in forced for op in FAST_PATHS}


_DEFAULTS = _from_environment()


def fast_paths() -> dict[str, bool]:
    """The default every newly built module takes: op name -> use the fast path."""
    return dict(_DEFAULTS)


def use_fast_path(op: str) -> bool:
    if op not in _DEFAULTS:
        raise UnknownNameError("fast path", op, FAST_PATHS)
    return _DEFAULTS[op]


def set_fast_paths(**enabled: Optional[bool]) -> None:
    """Set the default for modules built from now on, e.g. ``set_fast_paths(attention=False)``."""
    for op, value in enabled.items():
        use_fast_path(op)  # validates the name
        if value is not None:
            _DEFAULTS[op] = bool(value)


@contextlib.contextmanager
def reference_paths(*ops: str) -> Iterator[None]:
    """Build modules on the references inside the block (all ops when none are named)."""
    saved = dict(_DEFAULTS)
    set_fast_paths(**{op: False for op in (ops or FAST_PATHS)})
    try:
        yield
    finally:
        _DEFAULTS.clear()
        _DEFAULTS.update(saved)
