"""Video Depth Anything (VDA): Depth Anything V2 with a temporal head, as one module.

``VideoDepthAnything(config)`` (``config.motion`` set) is the published relative or metric model of
DepthAnything/Video-Depth-Anything. The encoder is the package's DINOv2 ViT and the decoder its DPT;
the new part is the temporal head: four *motion modules* (temporal self-attention across frames,
token by token) on the projected levels 3 and 4 and on path_4 and path_3 of the DPT. Parameter
names follow the published checkpoints (``pretrained.*``, ``head.*``, ``head.motion_modules.*``), so
they load with ``strict=True``.

Two ways to run it:

* :meth:`forward_window`: T frames at once, every frame attending to all T (the official batch
  forward, which the official offline mode runs on 32-frame windows);
* ``depth, state = model(frame, state)``: the official training-free streaming mode. Each motion
  attention caches its (normalised) input per frame; a new frame attends to itself and to
  ``motion.window - 1`` cached frames: the ``stream_head`` oldest and the newest ones, out of a queue
  of ``stream_slots`` frames (the official 2 + 29 out of 42). The queue lives in the explicit,
  fixed-size stream state, so memory is flat on unbounded streams and ``state=None`` starts a stream.

The stream state is a :class:`~flashdepth.models.flashdepth.StreamState` whose tensors are, in order:
``started`` (B, 1), 0 before the first frame and 1 after, and one cache per motion attention, module
by module, (B, tokens, stream_slots, channels) in float32. An all-zero state is a new stream (the
first frame attends to itself alone, at frame position 0, as the official code does), so the
exported graph follows the same state contract as FlashDepth's.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DPTConfig, MotionConfig, ModelConfig
from ..errors import ConfigError, InputShapeError, StreamStateError
from .dpt import DPTHead
from .flashdepth import FlashDepth, check_state_placement
from .vit import VisionTransformer


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim): sin on even channels, cos on odd ones, frequencies 10000^(-2i/dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * rate)
    table[0, :, 1::2] = torch.cos(position * rate)
    return table


class PositionTable(nn.Module):
    """``pos_encoder``: the frame-position table, a buffer stored in the published checkpoints."""

    def __init__(self, dim: int, length: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(length, dim))


class TemporalAttention(nn.Module):
    """Self-attention along time, for every token position separately."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.pos_encoder = PositionTable(dim, window)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """q (N, Lq, C), k and v (N, L, C) -> (N, Lq, C): softmax(q k^T / sqrt(C/heads) + bias) v per head."""
        n, lq, c = q.shape
        hd = c // self.heads
        q = q.reshape(n, lq, self.heads, hd).transpose(1, 2)  # (N, h, Lq, hd)
        k = k.reshape(n, -1, self.heads, hd).transpose(1, 2)  # (N, h, L, hd)
        v = v.reshape(n, -1, self.heads, hd).transpose(1, 2)  # (N, h, L, hd)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5  # (N, h, Lq, L)
        if bias is not None:
            scores = scores + bias
        out = scores.softmax(-1).to(v.dtype) @ v  # (N, h, Lq, hd)
        return self.to_out[0](out.transpose(1, 2).reshape(n, lq, c))

    def window(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, N, C) normalised -> (B, T, N, C): every frame attends to all T frames."""
        b, t, n, c = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(b * n, t, c)  # (B*N, T, C)
        seq = seq + self.pos_encoder.pe[:, :t].to(seq.dtype)
        out = self._attend(self.to_q(seq), self.to_k(seq), self.to_v(seq))  # (B*N, T, C)
        return out.reshape(b, n, t, c).permute(0, 2, 1, 3)

    def step(self, x: torch.Tensor, cache: torch.Tensor, started: torch.Tensor, head: int, tail: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One streamed frame. x (B, N, C) normalised, cache (B, N, S, C) float32, started (B, 1)
        -> (B, N, C) and the next cache.

        Keys are the ``head`` oldest and ``tail`` newest cached frames, then the frame itself at
        position head + tail; on a new stream (started 0) the cached keys are masked out and the
        frame sits at position 0, which is the official first frame (attention over itself alone).
        """
        b, n, c = x.shape
        slots = cache.shape[2]
        pe = self.pos_encoder.pe.to(x.dtype)  # (1, window, C)
        context = torch.cat([cache[:, :, :head], cache[:, :, slots - tail:]], dim=2).to(x.dtype)  # (B, N, K, C)
        k_len = head + tail
        on = started.to(x.dtype).reshape(b, 1, 1)  # (B, 1, 1)
        cur_pe = on * pe[:, k_len] + (1 - on) * pe[:, 0]  # (B, 1, C)
        cur = (x + cur_pe).reshape(b * n, 1, c)  # (B*N, 1, C)
        ctx = (context + pe[:, None, :k_len]).reshape(b * n, k_len, c)  # (B*N, K, C)
        keys = torch.cat([ctx, cur], dim=1)  # (B*N, K+1, C)
        # masked (-inf) context on a new stream: exp gives exactly 0, the frame's own weight exactly 1
        mask = torch.where(started.reshape(b, 1) > 0, 0.0, float("-inf")).to(x.dtype)  # (B, 1)
        bias = torch.cat([mask.expand(b, k_len), torch.zeros(b, 1, dtype=x.dtype, device=x.device)], dim=1)
        bias = bias.repeat_interleave(n, dim=0)[:, None, None, :]  # (B*N, 1, 1, K+1)
        out = self._attend(self.to_q(cur), self.to_k(keys), self.to_v(keys), bias)  # (B*N, 1, C)
        # the queue: keep the oldest frame, drop the second oldest, append this one (a new stream
        # fills every slot with this frame, as the official code copies the first frame's cache)
        new = x.float()[:, :, None]  # (B, N, 1, C)
        rolled = torch.cat([cache[:, :, :1], cache[:, :, 2:], new], dim=2)  # (B, N, S, C)
        filled = new.expand(b, n, slots, c)
        next_cache = torch.where(started.reshape(b, 1, 1, 1) > 0, rolled, filled)
        return out.reshape(b, n, c), next_cache


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TemporalBlock(nn.Module):
    """Pre-norm temporal attentions (each with a residual), then a GEGLU feed-forward."""

    def __init__(self, dim: int, cfg: MotionConfig):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, cfg.num_heads, cfg.window)
                                              for _ in range(cfg.attention_blocks))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(cfg.attention_blocks))
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, cfg: MotionConfig):
        super().__init__()
        self.norm = nn.GroupNorm(cfg.norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(TemporalBlock(channels, cfg) for _ in range(cfg.num_blocks))
        self.proj_out = nn.Linear(channels, channels)


class MotionModule(nn.Module):
    """``head.motion_modules.i``: a temporal transformer on a (B*T, C, h, w) feature map, added to it."""

    def __init__(self, channels: int, cfg: MotionConfig):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, cfg)
        self.cfg = cfg

    @property
    def num_caches(self) -> int:
        return self.cfg.num_blocks * self.cfg.attention_blocks

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) -> (M, h*w, C) after the per-frame GroupNorm and proj_in."""
        m, c, h, w = x.shape
        tt = self.temporal_transformer
        return tt.proj_in(tt.norm(x).permute(0, 2, 3, 1).reshape(m, h * w, c))

    def _out(self, tokens: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        m, c, h, w = residual.shape
        y = self.temporal_transformer.proj_out(tokens)  # (M, h*w, C)
        return y.reshape(m, h, w, c).permute(0, 3, 1, 2) + residual  # (M, C, h, w)

    def window(self, x: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """x (B*T, C, h, w), frames of a clip -> the same shape, all T frames attending to each other."""
        tokens = self._tokens(x)  # (B*T, N, C)
        n, c = tokens.shape[1:]
        for block in self.temporal_transformer.transformer_blocks:
            for attention, norm in zip(block.attention_blocks, block.norms):
                normed = norm(tokens).reshape(b, t, n, c)
                tokens = attention.window(normed).reshape(b * t, n, c) + tokens
            tokens = block.ff(block.ff_norm(tokens)) + tokens
        return self._out(tokens, x)

    def step(self, x: torch.Tensor, caches: list[torch.Tensor], started: torch.Tensor
             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C, h, w), one frame per stream; caches: this module's, in order -> output and new caches."""
        tokens = self._tokens(x)  # (B, N, C)
        new, i = [], 0
        for block in self.temporal_transformer.transformer_blocks:
            for attention, norm in zip(block.attention_blocks, block.norms):
                out, cache = attention.step(norm(tokens), caches[i], started, self.cfg.stream_head, self.cfg.stream_tail)
                tokens = out + tokens
                new.append(cache)
                i += 1
            tokens = block.ff(block.ff_norm(tokens)) + tokens
        return self._out(tokens, x), new


class TemporalDPTHead(DPTHead):
    """``head.*``: the DPT decoder with the four motion modules (``motion_modules``)."""

    def __init__(self, in_channels: int, dpt: DPTConfig, motion: MotionConfig):
        super().__init__(in_channels, dpt)
        oc, f = dpt.out_channels, dpt.features
        self.motion_modules = nn.ModuleList(MotionModule(c, motion) for c in (oc[2], oc[3], f, f))


def stream_state_shapes(config: ModelConfig, height: int, width: int, batch: int = 1) -> list[tuple[int, ...]]:
    """Shapes of a Video Depth Anything stream state for height x width frames: ``started`` (B, 1),
    then per motion attention, module by module, (B, tokens, stream_slots, channels)."""
    p = config.vit.patch_size
    ph, pw = height // p, width // p
    grids = (ph * pw, ((ph + 1) // 2) * ((pw + 1) // 2), ph * pw, 4 * ph * pw)  # layer_3, layer_4, path_4, path_3
    oc, f = config.dpt.out_channels, config.dpt.features
    motion = config.motion
    per_module = motion.num_blocks * motion.attention_blocks
    shapes: list[tuple[int, ...]] = [(batch, 1)]
    for tokens, channels in zip(grids, (oc[2], oc[3], f, f)):
        shapes += [(batch, tokens, motion.stream_slots, channels)] * per_module
    return shapes


class VideoDepthAnything(FlashDepth):
    """Video Depth Anything (relative or metric, S/B/L). It shares FlashDepth's stream interface
    (``forward``, ``forward_sequence``, ``run_frames``, the input checks, fast paths, casting), with
    its own layers and stream state."""

    def __init__(self, config: ModelConfig):
        nn.Module.__init__(self)  # FlashDepth's layers are not built: the interface is what is shared
        config.validate()
        if config.motion is None:
            raise ConfigError(f"{config.name} has no motion config: VideoDepthAnything needs config.motion (its "
                              "temporal head); build other configs with flashdepth.models.build_model")
        self.config = config
        self.pretrained = VisionTransformer(config.vit)
        self.head = TemporalDPTHead(config.vit.embed_dim, config.dpt, config.motion)

    @property
    def depth_head(self) -> TemporalDPTHead:
        """The decoder under the name FlashDepth's code and tests use."""
        return self.head

    @property
    def is_temporal(self) -> bool:
        return True

    def min_input_size(self) -> int:
        return self.patch_size

    # --------------------------------------------------------------------------- the state
    def cache_shapes(self, height: int, width: int, batch: int = 1) -> list[tuple[int, ...]]:
        """Shapes of the stream state's tensors for height x width frames (:func:`stream_state_shapes`)."""
        return stream_state_shapes(self.config, height, width, batch)

    def start_state(self, batch: int, height: int, width: int, device=None) -> tuple[torch.Tensor, ...]:
        """The all-zero state tensors of a new stream (what ``state=None`` means)."""
        return tuple(torch.zeros(s, device=device) for s in self.cache_shapes(height, width, batch))

    def _check_state(self, state, batch: int, device: Optional[torch.device] = None) -> None:
        if state is None:
            return
        from .flashdepth import StreamState

        if not isinstance(state, StreamState):
            raise StreamStateError(f"expected the StreamState returned by this model's previous call, got "
                                   f"{type(state).__name__}; start the stream with state=None")
        count = 1 + sum(m.num_caches for m in self.head.motion_modules)
        if len(state.ssm) != count:
            raise StreamStateError(f"the stream state holds {len(state.ssm)} tensor(s) but {self.config.name} carries "
                                   f"{count}: it belongs to another model; start the stream with state=None")
        for i, s in enumerate(state.ssm):
            if not isinstance(s, torch.Tensor) or s.dtype != torch.float32:
                raise StreamStateError(f"stream state {i} is not a float32 tensor; pass the state this model "
                                       "returned, unchanged")
        check_state_placement(state, device, batch)

    def check_stream(self, video: torch.Tensor, state) -> None:
        super().check_stream(video, state)
        if state is not None:
            b, _, _, height, width = video.shape
            expected = self.cache_shapes(height, width, b)
            got = [tuple(s.shape) for s in state.ssm]
            if got != expected:
                raise StreamStateError(f"the stream state was made for another frame size or model (cache shapes "
                                       f"{got[1]} ... vs {expected[1]} ... for {height}x{width} frames); start a new "
                                       "stream with state=None")

    # ------------------------------------------------------------------------- computation
    def _levels(self, video: torch.Tensor) -> tuple[list[torch.Tensor], int, int]:
        """video (B, T, 3, H, W) -> the DPT's projected and resized levels 1..4 (B*T, oc_k, h_k, w_k)."""
        b, t, c, height, width = video.shape
        ph, pw = height // self.patch_size, width // self.patch_size
        tokens = self.pretrained.intermediate_layers(video.reshape(b * t, c, height, width))  # 4 x (B*T, ph*pw, D)
        head = self.head
        out = []
        for k, x in enumerate(tokens):
            x = head._layout(x.transpose(1, 2).reshape(x.shape[0], x.shape[-1], ph, pw))  # (B*T, D, ph, pw)
            out.append(head.resize_layers[k](head.projects[k](x)))  # (B*T, oc_k, s_k*ph, s_k*pw)
        return out, ph, pw

    def _decode(self, layers: list[torch.Tensor], ph: int, pw: int, temporal) -> torch.Tensor:
        """The decoder with ``temporal(i, x)`` applying motion module i -> depth (B*T, H, W)."""
        head = self.head
        layers[2] = temporal(0, layers[2])  # level 3, (B*T, oc_3, ph, pw)
        layers[3] = temporal(1, layers[3])  # level 4, (B*T, oc_4, ph/2, pw/2)
        levels = {k: getattr(head.scratch, f"layer{k}_rn")(head._layout(layers[k - 1])) for k in range(1, 5)}
        path = head.refine(0, None, levels)  # path_4 (B*T, f, ph, pw)
        path = temporal(2, path)
        path = head.refine(1, path, levels)  # path_3 (B*T, f, 2ph, 2pw)
        path = temporal(3, path)
        path = head.refine(2, path, levels)  # path_2
        path = head.refine(3, path, levels)  # path_1
        return head.head(path, ph * self.patch_size, pw * self.patch_size)  # (B*T, H, W), ReLU'd

    def forward_window(self, frames: torch.Tensor) -> torch.Tensor:
        """The official batch forward: frames (B, T, 3, H, W) normalised, T <= motion.window ->
        depth (B, T, H, W); every frame attends to all T frames of the clip (no stream state)."""
        self.check_stream(frames, None)
        b, t, _, height, width = frames.shape
        if t > self.config.motion.window:
            raise InputShapeError(f"forward_window takes at most {self.config.motion.window} frames (the "
                                  f"position table's length), got {t}; split the clip into windows")
        layers, ph, pw = self._levels(frames)
        depth = self._decode(layers, ph, pw, lambda i, x: self.head.motion_modules[i].window(x, b, t))
        return depth.reshape(b, t, height, width)

    def run_frames(self, video: torch.Tensor, ssm: Optional[tuple[torch.Tensor, ...]]
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Streaming on tensors: video (B, T, 3, H, W) and the state tensors (None: a new stream) ->
        depth (B, T, H, W) and the state after the T frames, which are taken one after the other
        (the encoder runs batched over them; each motion module scans them in order)."""
        b, t, _, height, width = video.shape
        state = list(ssm) if ssm is not None else list(self.start_state(b, height, width, video.device))
        modules = self.head.motion_modules
        offsets = [1]
        for m in modules:
            offsets.append(offsets[-1] + m.num_caches)
        started = state[0]

        def temporal(i: int, x: torch.Tensor) -> torch.Tensor:
            caches = state[offsets[i]:offsets[i + 1]]
            frames = x.reshape(b, t, *x.shape[1:])  # (B, T, C, h, w)
            outs, flag = [], started
            for j in range(t):
                out, caches = modules[i].step(frames[:, j], caches, flag)
                flag = torch.ones_like(started)
                outs.append(out)
            state[offsets[i]:offsets[i + 1]] = caches
            return torch.stack(outs, 1).reshape(x.shape)

        layers, ph, pw = self._levels(video)
        depth = self._decode(layers, ph, pw, temporal)
        state[0] = started.clamp(1.0, 1.0)  # 1 from now on (computed from the input: no constant graph output)
        return depth.reshape(b, t, height, width), tuple(state)
