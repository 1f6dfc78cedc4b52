"""Small helpers shared across the package."""

from __future__ import annotations

import os
import re
import sys

import numpy as np


def natural_key(path: str | os.PathLike) -> tuple:
    """Sort key of a file name by its numbers (frame_10 after frame_9), case-insensitively."""
    name = os.path.basename(os.fspath(path))
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), for one-line errors."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))
        except ImportError:
            return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def as_rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an input image: 8-bit or 16-bit, grey, RGB or RGBA."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)  # 16-bit: 65535 -> 255
    return image


def lazy_attributes(package: str, names: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package whose heavy submodules load on first use: ``names``
    maps an attribute to the submodule of ``package`` that defines it (so importing the package
    and reading its light tables never imports torch)."""
    import importlib

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
            setattr(sys.modules[package], name, value)  # cached: the next read is a plain attribute
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
