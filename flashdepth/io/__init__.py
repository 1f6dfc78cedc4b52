"""Streaming video I/O: sources yield frames one at a time, sinks consume them."""

from .sinks import RawDepthWriter, open_sinks
from .sources import Frame, InputError, open_source

__all__ = ["Frame", "InputError", "RawDepthWriter", "open_sinks", "open_source"]
