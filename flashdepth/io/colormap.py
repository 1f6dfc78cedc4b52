"""Moved to :mod:`flashdepth.vis.colormap`; this name stays importable."""

from ..vis.colormap import COLORMAPS, DEFAULT_COLORMAP, StableNormalizer, colorize, lut

__all__ = ["COLORMAPS", "DEFAULT_COLORMAP", "StableNormalizer", "colorize", "lut"]
