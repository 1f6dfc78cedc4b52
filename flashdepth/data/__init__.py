"""Datasets on disk: the "flashdepth sequence folder" format, its reader and converters."""

from .sequence import DatasetFolder, SequenceFolder, SequenceWriter

__all__ = ["DatasetFolder", "SequenceFolder", "SequenceWriter"]
