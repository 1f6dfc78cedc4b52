from .flashdepth import FlashDepth, StreamState

__all__ = ["FlashDepth", "StreamState"]
