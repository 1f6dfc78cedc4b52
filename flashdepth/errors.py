"""Exception classes of flashdepth.

Every error a user can cause is one of these, with a one-line message that names the
offending value and says what to do. The CLI prints ``str(error)`` and exits with code 2.
"""

from __future__ import annotations


class FlashDepthError(Exception):
    """Base class of every error flashdepth raises on purpose."""


class ConfigError(FlashDepthError, ValueError):
    """A model or training configuration is invalid (unknown key, wrong type, bad value)."""


class UnknownModelError(FlashDepthError, KeyError):
    """A model name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class CheckpointError(FlashDepthError, ValueError):
    """A file is not a readable checkpoint, or its tensors do not fit the model."""


class WeightsNotFoundError(FlashDepthError, FileNotFoundError):
    """Published weights could not be found locally nor downloaded."""


class InputShapeError(FlashDepthError, ValueError):
    """A frame tensor has the wrong rank, channel count or size for the model."""


class StreamStateError(FlashDepthError, ValueError):
    """A stream state does not belong to this model or this stream."""
