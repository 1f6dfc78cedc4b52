from .architectures import ARCHITECTURES, build_model
from .flashdepth import FlashDepth, Runner, StreamState
from .vda import VideoDepthAnything

__all__ = ["ARCHITECTURES", "FlashDepth", "Runner", "StreamState", "VideoDepthAnything", "build_model"]
