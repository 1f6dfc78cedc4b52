"""Visualisation: colour maps and the normalisation of depth for display (used by the video
outputs, the live page and the demo)."""

from .colormap import COLORMAPS, DEFAULT_COLORMAP, StableNormalizer, colorize, lut

__all__ = ["COLORMAPS", "DEFAULT_COLORMAP", "StableNormalizer", "colorize", "lut"]
