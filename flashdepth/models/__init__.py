from .flashdepth import FlashDepth, Runner, StreamState

__all__ = ["FlashDepth", "Runner", "StreamState"]
