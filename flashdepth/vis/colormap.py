"""Colour maps for depth visualisation (matplotlib's published tables), a stable normaliser,
and the conversion of any input image to 8-bit RGB for display.

The maps are sampled from matplotlib at 256 entries, so ``inferno`` or ``Spectral_r`` here are
exactly matplotlib's (``Spectral_r`` is Depth Anything's default). Normalisation uses running
percentiles so a video does not flicker the way per-frame min/max scaling does.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import MissingDependencyError, UnknownNameError

#: the colour maps offered (names as matplotlib spells them); the CLI's choices come from here
COLORMAPS = ("inferno", "turbo", "Spectral_r", "viridis", "magma", "gray")
#: the colour map of the videos and the live page unless one is chosen
DEFAULT_COLORMAP = COLORMAPS[0]


@functools.cache
def lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of colour map ``name``."""
    if name not in COLORMAPS:
        raise UnknownNameError("colour map", name, COLORMAPS)
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("colourised outputs", "matplotlib", "video") from None
    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))  # (256, 4) floats in [0, 1]
    table = (rgba[:, :3] * 255.0).round().astype(np.uint8)
    table.flags.writeable = False  # shared between writers through the cache
    return table


class StableNormalizer:
    """Maps depth to [0, 1] with the 2nd/98th percentiles tracked as exponential moving averages.

    The first frame sets the range; later frames move it by ``1 - momentum`` of the way to their
    own percentiles, so brightness drifts smoothly instead of jumping from frame to frame.
    """

    def __init__(self, low: float = 2.0, high: float = 98.0, momentum: float = 0.9):
        self.low, self.high, self.momentum = low, high, momentum
        self.range: tuple[float, float] | None = None

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        sample = depth[:: max(1, depth.shape[0] // 256), :: max(1, depth.shape[1] // 256)]
        lo, hi = np.percentile(sample, [self.low, self.high])
        if self.range is None:
            self.range = (float(lo), float(hi))
        else:
            m = self.momentum
            self.range = (m * self.range[0] + (1 - m) * lo, m * self.range[1] + (1 - m) * hi)
        lo, hi = self.range
        return np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def colorize(unit: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8."""
    return table[(unit * 255).round().astype(np.uint8)]
