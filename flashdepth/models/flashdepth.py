"""FlashDepth and Depth Anything V2 as one module.

``FlashDepth(config)`` is Depth Anything V2 when ``config.temporal`` is None, FlashDepth-S/-L with
a temporal module, and FlashDepth (Full) with ``config.fusion`` as well. Parameter names follow
the published checkpoints, so their state dicts load with ``strict=True``.

Stream state is explicit: ``depth, state = model(frame, state)``; ``state=None`` starts a new
stream, and the module itself keeps nothing between calls, so one model can serve many streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import FusionConfig, ModelConfig
from ..errors import ConfigError, InputShapeError, InputValueError, StreamStateError
from ..ops import use_fast_path
from .dpt import DPTHead
from .fusion import HybridFusion
from .temporal import TemporalModule
from .vit import VisionTransformer


#: the layers whose weights autocast casts to the low precision (cast once by cast_for_inference)
LOW_PRECISION_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class StreamState:
    """What one stream carries from frame to frame: the SSM state of every Mamba block.

    ``ssm[i]`` is (B, nheads, headdim, d_state) in float32; ``frames`` counts frames consumed.
    """

    ssm: tuple[torch.Tensor, ...]
    frames: int

    def detach(self) -> "StreamState":
        """Cut the autograd graph (truncated back-propagation through time)."""
        return StreamState(tuple(s.detach() for s in self.ssm), self.frames)

    def to(self, device: torch.device | str) -> "StreamState":
        return StreamState(tuple(s.to(device) for s in self.ssm), self.frames)

    @staticmethod
    def advance(state: Optional["StreamState"], ssm: Optional[tuple[torch.Tensor, ...]], frames: int = 1
                ) -> Optional["StreamState"]:
        """The state after ``frames`` more frames of the stream that carried ``state`` (None: a new
        stream): ``ssm`` the new SSM tensors. None when ``ssm`` is None (per-frame models carry
        nothing). The one place the frame count is kept, for the model and every runner."""
        if ssm is None:
            return None
        return StreamState(tuple(ssm), (0 if state is None else state.frames) + int(frames))


def check_state_placement(state: "StreamState", device: Optional[torch.device], batch: int) -> None:
    """Every tensor of ``state`` on ``device`` (None: not checked) and holding ``batch`` streams:
    the checks a stream state passes whatever model carries it (its shapes are the model's own)."""
    for i, s in enumerate(state.ssm):
        if device is not None and s.device != device:
            raise StreamStateError(f"stream state {i} is on {s.device} but the frame on {device}; move it with "
                                   f"state.to({str(device)!r})")
    if state.ssm[0].shape[0] != batch:
        raise StreamStateError(f"the stream state holds {state.ssm[0].shape[0]} stream(s) but the frame batch has "
                               f"{batch}; start a new stream with state=None")


@runtime_checkable
class Runner(Protocol):
    """The runner contract: what :class:`~flashdepth.DepthSession`, ``flashdepth run`` and
    ``flashdepth bench`` drive. :class:`FlashDepth` itself, ``flashdepth.inference.backends.CompiledRunner``
    and ``flashdepth.export.OnnxRunner`` follow it.

    ``depth, state = runner(frame, state)``: frame (B, 3, H, W) normalised, ``state=None`` starts a
    stream; depth (B, H, W) and the state for the next frame (None for per-frame models), counted
    with :meth:`StreamState.advance`. What a call returns is the caller's: a runner never hands out
    memory it will overwrite on the next call. A runner whose first frame of a size costs more (an
    export) may also offer ``prepare(batch, h, w)``, which :meth:`SessionSpec.open` calls when the
    frame size is known in advance.
    """

    config: ModelConfig

    def __call__(self, frame: torch.Tensor, state: Optional[StreamState] = None
                 ) -> tuple[torch.Tensor, Optional[StreamState]]: ...

    def min_input_size(self) -> int: ...

    def to(self, device) -> "Runner": ...

    def eval(self) -> "Runner": ...


class Teacher(nn.Module):
    """``teacher_model.*``: the frozen ViT-L + DPT-L branch of FlashDepth (Full), run to path_4."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.pretrained = VisionTransformer(cfg.teacher_vit)
        self.depth_head = DPTHead(cfg.teacher_vit.embed_dim, cfg.teacher_dpt)
        self.resolution = cfg.teacher_resolution
        self.patch = cfg.teacher_vit.patch_size

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Frames taller than ``resolution`` go to height ``resolution`` (width floored to the patch)."""
        height, width = x.shape[-2:]
        if height <= self.resolution:
            return x
        main_w = (int((self.resolution / height) * width) // self.patch) * self.patch
        return F.interpolate(x, size=(self.resolution, main_w), mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) normalised -> teacher path_4 (B, C_t, h_t, w_t)."""
        x = self.resize(x)
        ph, pw = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        tokens = self.pretrained.intermediate_layers(x)
        # Stage 0 reads level 3 only for its size, the patch grid: level 3 itself is not computed.
        return self.depth_head.refine(0, None, self.depth_head.levels(tokens, ph, pw, paths=(4,)), size=(ph, pw))


class FlashDepth(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        # Registration order reproduces the published state-dict key order.
        if config.fusion is not None:
            self.teacher_model = Teacher(config.fusion)
            self.hybrid_fusion = HybridFusion(config.dpt.features, config.fusion.teacher_dpt.features, config.fusion)
        self.pretrained = VisionTransformer(config.vit)
        if config.temporal is not None:
            self.mamba = TemporalModule(config.dpt.features, config.temporal)
        self.depth_head = DPTHead(config.vit.embed_dim, config.dpt)

    # ----------------------------------------------------------------------------- properties
    @property
    def is_temporal(self) -> bool:
        return self.config.temporal is not None

    @property
    def patch_size(self) -> int:
        return self.config.vit.patch_size

    def min_input_size(self) -> int:
        """Smallest side (pixels) the model accepts: at least one token after the temporal pooling."""
        p = self.patch_size
        if self.config.temporal is None:
            return p
        scale = 2 ** self.config.temporal.dpt_layer  # path_4 at 1x the grid ... path_1 at 8x
        cells = 1
        while int(cells * scale * self.config.temporal.downsample) < 1:
            cells += 1
        return cells * p

    def set_fast_paths(self, **enabled: Optional[bool]) -> "FlashDepth":
        """Choose fast path or reference per op on this model, e.g. ``set_fast_paths(attention=False)``
        (op names: :data:`flashdepth.ops.FAST_PATHS`; None leaves an op as it is)."""
        for op, value in enabled.items():
            use_fast_path(op)  # validates the name
            for module in self.modules():
                if value is not None and getattr(module, "fast_path_op", None) == op:
                    module.fused = bool(value)
        return self

    def fast_paths(self) -> dict[str, bool]:
        """op name -> whether every module of this model with that op runs its fast path."""
        found: dict[str, list[bool]] = {}
        for module in self.modules():
            op = getattr(module, "fast_path_op", None)
            if op is not None:
                found.setdefault(op, []).append(module.fused)
        return {op: all(flags) for op, flags in found.items()}

    @torch.no_grad()
    def cast_for_inference(self, dtype: torch.dtype) -> "FlashDepth":
        """Cast once, in place, the weights autocast would otherwise re-cast on every frame.

        For inference under ``torch.autocast(dtype=dtype)``: the weights and biases of the
        linear and convolution layers become ``dtype``; everything else -- the normalisations,
        LayerScale, the class token and position embedding, Mamba's A_log, dt_bias and D -- and the
        recurrent state stay float32, so the result equals autocast on float32 weights (which
        rounds the same weights the same way) without the per-frame casts. Frozen models only.
        """
        trainable = [n for n, p in self.named_parameters() if p.requires_grad]
        if trainable:
            raise ConfigError(f"cast_for_inference is for frozen models, but {trainable[0]} (and "
                              f"{len(trainable) - 1} more) require gradients; call model.requires_grad_(False) first")
        for module in self.modules():
            if isinstance(module, LOW_PRECISION_LAYERS):
                for p in module.parameters(recurse=False):
                    p.data = p.data.to(dtype)
        return self

    def weights_dtype(self) -> torch.dtype:
        """The dtype of the linear/convolution weights (float32 unless :meth:`cast_for_inference` ran)."""
        return self.pretrained.patch_embed.proj.weight.dtype

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute activations per transformer / Mamba block in the backward pass."""
        for module in self.modules():
            if hasattr(module, "grad_checkpointing"):
                module.grad_checkpointing = enabled

    # ------------------------------------------------------------------------------- forward
    def forward(self, frame: torch.Tensor, state: Optional[StreamState] = None
                ) -> tuple[torch.Tensor, Optional[StreamState]]:
        """One frame of a stream.

        frame: (B, 3, H, W) ImageNet-normalised RGB, H and W multiples of 14.
        Returns depth (B, H, W) -- inverse depth ("disparity") on the published ~100/m scale -- and
        the state to pass with the next frame (None for the per-frame Depth Anything V2 models).
        """
        self._check_type(frame, "frame batch (B, 3, H, W)")
        if frame.dim() != 4:
            raise InputShapeError(f"expected a frame batch (B, 3, H, W), got shape {tuple(frame.shape)}; "
                                  "add a batch dimension with frame[None]")
        depth, state = self.forward_sequence(frame[:, None], state)
        return depth[:, 0], state

    def forward_sequence(self, video: torch.Tensor, state: Optional[StreamState] = None
                         ) -> tuple[torch.Tensor, Optional[StreamState]]:
        """T consecutive frames at once (the training unroll): video (B, T, 3, H, W) -> (B, T, H, W).

        Equal to calling :meth:`forward` frame by frame with the state carried; the encoder and
        decoder run batched over all frames, only the SSM scan runs along time.
        """
        self.check_stream(video, state)
        depth, ssm = self.run_frames(video, None if state is None else state.ssm)
        return depth, StreamState.advance(state, ssm, video.shape[1])

    def check_stream(self, video: torch.Tensor, state: Optional[StreamState]) -> None:
        """The input checks of :meth:`forward_sequence` (clear errors before any computation)."""
        self._check_type(video, "clip (B, T, 3, H, W)")
        if video.dim() != 5:
            raise InputShapeError(f"expected a clip (B, T, 3, H, W), got shape {tuple(video.shape)}")
        b, t, c, height, width = video.shape
        if b == 0 or t == 0:
            raise InputShapeError(f"the input {tuple(video.shape)} holds no frame (batch {b}, {t} frame(s)); "
                                  "pass at least one frame")
        self._check_input(c, height, width)
        self._check_state(state, b, video.device)

    def _check_type(self, x, what: str) -> None:
        """Type, dtype and device of the input: metadata only (no host-device synchronisation)."""
        if not isinstance(x, torch.Tensor):
            hint = ("convert it with torch.from_numpy(...), or stream numpy frames through "
                    "flashdepth.inference.session.DepthSession" if isinstance(x, np.ndarray) else "pass a torch.Tensor")
            raise InputValueError(f"expected a {what} float tensor, got {type(x).__name__}; {hint}")
        weight = self.pretrained.patch_embed.proj.weight
        if not x.dtype.is_floating_point:
            raise InputValueError(
                f"expected a float frame tensor (ImageNet-normalised RGB), got dtype {x.dtype}; prepare raw pixels "
                "with flashdepth.inference.preprocess.to_float_rgb and normalise, or pass them to DepthSession")
        if x.dtype not in (torch.float32, weight.dtype):
            raise InputValueError(f"frame dtype {x.dtype} does not match the model's {weight.dtype} weights; "
                                  f"cast it with frame.to({weight.dtype}) (use torch.autocast for lower precision)")
        if x.device != weight.device:
            raise InputValueError(f"the frame is on {x.device} but the model is on {weight.device}; "
                                  f"move it with frame.to({str(weight.device)!r})")

    def run_frames(self, video: torch.Tensor, ssm: Optional[tuple[torch.Tensor, ...]]
                   ) -> tuple[torch.Tensor, Optional[tuple[torch.Tensor, ...]]]:
        """The computation alone, on tensors: video (B, T, 3, H, W) and the SSM states (or None)
        -> depth (B, T, H, W) and the new SSM states (None for per-frame models).

        No checks and no Python-side bookkeeping, so compilers (torch.compile, exporters) trace
        one graph that does not depend on how many frames a stream has seen.
        """
        b, t, c, height, width = video.shape
        x = video.reshape(b * t, c, height, width)
        ph, pw = height // self.patch_size, width // self.patch_size

        tokens = self.pretrained.intermediate_layers(x)  # 4 x (B*T, ph*pw, D)
        levels = self.depth_head.levels(tokens, ph, pw)  # {k: (B*T, f, h_k, w_k)}
        temporal_stage = self.config.temporal.dpt_layer if self.config.temporal is not None else None
        new_ssm = None
        path = None
        for stage in range(4):
            path = self.depth_head.refine(stage, path, levels)  # path_{4 - stage}
            if stage == 0 and self.config.fusion is not None:
                path = self.hybrid_fusion(path, self.teacher_model(x))  # (B*T, f, ph, pw)
            if stage == temporal_stage:
                out, new_ssm = self.mamba(path.reshape(b, t, *path.shape[1:]), ssm)
                path = out.reshape(path.shape)  # (B*T, f, h, w)
        depth = self.depth_head.head(path, ph * self.patch_size, pw * self.patch_size)  # (B*T, H, W)
        return depth.reshape(b, t, height, width), new_ssm

    def _check_input(self, channels: int, height: int, width: int) -> None:
        p = self.patch_size
        if channels != 3:
            raise InputShapeError(f"expected 3 colour channels (RGB), got {channels}; convert the frame to RGB first")
        if height % p or width % p:
            raise InputShapeError(
                f"frame size {height}x{width} is not a multiple of the {p}-pixel patch; resize it to "
                f"{max(p, round(height / p) * p)}x{max(p, round(width / p) * p)} "
                "(flashdepth.inference.preprocess does this)")
        smallest = self.min_input_size()
        if min(height, width) < smallest:
            raise InputShapeError(f"frame size {height}x{width} is too small for {self.config.name}: "
                                  f"each side must be at least {smallest} pixels")

    def _check_state(self, state: Optional[StreamState], batch: int, device: Optional[torch.device] = None) -> None:
        """Type, count, shapes, dtype and device of the state: metadata only (no synchronisation)."""
        if state is None:
            return
        if self.config.temporal is None:
            raise StreamStateError(f"{self.config.name} is a per-frame model and takes no stream state; pass state=None")
        if not isinstance(state, StreamState):
            raise StreamStateError(f"expected the StreamState returned by this model's previous call, got "
                                   f"{type(state).__name__}; start the stream with state=None")
        if len(state.ssm) != self.mamba.num_states:
            raise StreamStateError(f"the stream state holds {len(state.ssm)} SSM state(s) but {self.config.name} has "
                                   f"{self.mamba.num_states}: it belongs to another model; start the stream with "
                                   "state=None")
        mixer = self.mamba.blocks[0][0].mamba
        expected = (mixer.nheads, mixer.headdim, mixer.d_state)  # (H, P, N) of every block
        for i, s in enumerate(state.ssm):
            if not isinstance(s, torch.Tensor) or s.dim() != 4 or tuple(s.shape[1:]) != expected:
                shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise StreamStateError(f"stream state {i} has shape {shape} but {self.config.name} carries "
                                       f"(B, {', '.join(map(str, expected))}): it belongs to another model; "
                                       "start the stream with state=None")
            if s.dtype != torch.float32:
                raise StreamStateError(f"stream state {i} is {s.dtype} but states are float32; pass the state "
                                       "this model returned, unchanged")
        check_state_placement(state, device, batch)
