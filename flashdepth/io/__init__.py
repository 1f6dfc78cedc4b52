"""Streaming video I/O: sources yield frames one at a time, sinks consume them."""

from ..errors import InputError
from .sinks import OUTPUTS, OutputOptions, RawDepthWriter, open_sinks
from .sources import Frame, open_source

__all__ = ["Frame", "InputError", "OUTPUTS", "OutputOptions", "RawDepthWriter", "open_sinks", "open_source"]
