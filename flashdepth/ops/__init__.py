"""Numerical kernels, each a pure-PyTorch reference beside an optional fast path.

``FLASHDEPTH_REFERENCE`` forces the references: ``1``/``all`` for every op, or a comma list of
op names (``ssd``, ``attention``). The fast paths must agree with the references (tests).
"""

from __future__ import annotations

import os

OPS = ("ssd", "attention")


def force_reference(op: str) -> bool:
    """True when the environment asks for the reference implementation of ``op``."""
    value = os.environ.get("FLASHDEPTH_REFERENCE", "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "all", "true", "yes"):
        return True
    return op in {v.strip() for v in value.split(",")}
