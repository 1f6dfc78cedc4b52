"""Colour maps for depth visualisation and a temporally stable normaliser.

The maps are piecewise-linear through a few key colours (perceptually ordered dark -> bright
for ``inferno``, blue -> red for ``turbo``); ``gray`` is linear. Normalisation uses running
percentiles so a video does not flicker the way per-frame min/max scaling does.
"""

from __future__ import annotations

import numpy as np

_KEYS = {
    "inferno": [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                (245, 125, 21), (250, 193, 39), (252, 255, 164)],
    "turbo": [(48, 18, 59), (70, 107, 227), (40, 187, 236), (50, 242, 152), (164, 252, 60),
              (237, 208, 58), (251, 128, 34), (210, 49, 5), (122, 4, 3)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}
COLORMAPS = tuple(_KEYS)


def lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table."""
    keys = np.asarray(_KEYS[name], dtype=np.float64)
    where = np.linspace(0, 1, len(keys))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, where, keys[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


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
