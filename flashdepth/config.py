"""Typed, frozen model configurations.

A configuration is plain data: it round-trips through :meth:`to_dict` / :func:`from_dict`
(JSON-safe), and our checkpoints store it. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import math

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError


@dataclass(frozen=True)
class Stem:
    """How a ViT turns pixels into patch tokens (a row of :data:`STEMS`)."""

    name: str
    description: str
    convs: int  # 3x3 convolutions (the first at stride 2) before the patch projection; 0: none
    width: int  # their channels


#: The ViT stems. ``patch`` is DINOv2's (every published checkpoint); ``conv`` puts two small
#: convolutions in front (as in "Early convolutions help transformers see better", Xiao et al.
#: 2021): a from-scratch model then reads texture finer than a patch (docs/tiny-synthetic.md#memory).
STEMS: dict[str, Stem] = {s.name: s for s in (
    Stem("patch", "one linear projection per patch (DINOv2, every published checkpoint)", convs=0, width=0),
    Stem("conv", "two 3x3 convolutions (the first at stride 2, 32 channels) before a half-size patch projection: "
                 "for models trained from scratch (needs an even patch size)", convs=2, width=32),
)}


@dataclass(frozen=True)
class ViTConfig:
    """DINOv2 ViT encoder (as used by Depth Anything V2)."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 14
    pos_grid: int = 37  # the learned pos-embed is a pos_grid x pos_grid patch grid (518 px / 14)
    layer_indices: tuple[int, ...] = (2, 5, 8, 11)  # blocks whose (normed) outputs feed the DPT
    norm_eps: float = 1e-6
    interpolate_offset: float = 0.1  # DINOv2's offset in the pos-embed scale factor
    stem: str = "patch"  # a row of STEMS

    def validate(self) -> None:
        _check(self.stem in STEMS, f"vit.stem={self.stem!r} is not one of: "
               + "; ".join(f"{n} ({row.description})" for n, row in STEMS.items()))
        _check(STEMS[self.stem].convs == 0 or self.patch_size % 2 == 0,
               f"vit.stem={self.stem!r} halves the frame before the patch projection, so vit.patch_size="
               f"{self.patch_size} must be even; use an even patch size or stem='patch'")
        _check(self.embed_dim % self.num_heads == 0, f"vit.embed_dim={self.embed_dim} is not divisible by vit.num_heads={self.num_heads}")
        _check(len(self.layer_indices) == 4, f"vit.layer_indices={self.layer_indices} must name 4 blocks (one per DPT level)")
        _check(all(0 <= i < self.depth for i in self.layer_indices), f"vit.layer_indices={self.layer_indices} must lie in [0, depth={self.depth})")


@dataclass(frozen=True)
class OutputUnit:
    """What a model's numbers mean. Everything downstream (outputs, point clouds, viewers, the
    evaluation's default alignment) reads these fields, never a model's name."""

    name: str
    description: str
    inverse: bool  # True: larger is nearer (inverse depth); False: larger is farther (depth)
    metric: bool  # True: metres (or 1/m); False: known only up to a scale and a shift
    symbol: str  # the unit as written next to numbers


#: The output units of the model table's rows.
UNITS: dict[str, OutputUnit] = {u.name: u for u in (
    OutputUnit("relative-inverse-depth", "inverse depth on the published training scale (ground-truth 1/m x 100): "
               "relative, up to a scale and a shift", inverse=True, metric=False, symbol="100/m (relative)"),
    OutputUnit("metric-depth", "depth along the optical axis in metres", inverse=False, metric=True, symbol="m"),
)}


@dataclass(frozen=True)
class DPTConfig:
    """DPT decoder of Depth Anything V2."""

    features: int = 64  # "dpt_dim": width of every refinenet path
    out_channels: tuple[int, int, int, int] = (48, 96, 192, 384)
    head_hidden: int = 32  # width of output_conv2's hidden layer
    # 0: the head ends in a ReLU and gives relative inverse depth (Depth Anything V2, FlashDepth);
    # > 0: it ends in a sigmoid times this many metres and gives metric depth (the DAv2 metric models).
    max_depth: float = 0.0

    def validate(self) -> None:
        _check(len(self.out_channels) == 4, f"dpt.out_channels={self.out_channels} must have 4 entries")
        _check(self.features % 2 == 0, f"dpt.features={self.features} must be even (output_conv1 halves it)")
        _check(math.isfinite(self.max_depth) and self.max_depth >= 0,
               f"dpt.max_depth={self.max_depth} must be 0 (relative inverse depth) or a depth cap in metres")

    @property
    def unit(self) -> "OutputUnit":
        """What the head outputs (a row of :data:`UNITS`)."""
        return UNITS["metric-depth" if self.max_depth > 0 else "relative-inverse-depth"]


@dataclass(frozen=True)
class TemporalConfig:
    """The recurrent Mamba2 module placed inside the DPT decoder.

    ``dpt_layer`` k places it on path_4 (0), path_3 (1), path_2 (2) or path_1 (3), right after that
    refinenet. The model width ``d_model`` is the DPT's ``features``.
    """

    dpt_layer: int = 1
    num_blocks: int = 4
    downsample: float = 0.1  # tokens come from features average-pooled to this fraction of each side
    d_state: int = 256  # N: SSM state size
    d_conv: int = 4  # depthwise causal conv width (zero-padded within each frame)
    expand: int = 4  # d_inner = expand * d_model
    headdim: int = 32  # P: channels per SSM head
    ngroups: int = 1  # groups sharing B and C
    chunk_size: int = 256  # SSD chunk length (numerics only)
    mlp_ratio: int = 4

    def validate(self) -> None:
        _check(0 <= self.dpt_layer <= 3, f"temporal.dpt_layer={self.dpt_layer} must be 0, 1, 2 or 3")
        _check(0.0 < self.downsample <= 1.0, f"temporal.downsample={self.downsample} must be in (0, 1]")
        _check(self.chunk_size > 0 and self.d_conv > 0 and self.num_blocks > 0,
               "temporal.chunk_size, d_conv and num_blocks must be positive")


@dataclass(frozen=True)
class FusionConfig:
    """FlashDepth (Full): a frozen low-resolution teacher branch fused into the student's path_4."""

    teacher_vit: ViTConfig = field(default_factory=lambda: ViTConfig(
        embed_dim=1024, depth=24, num_heads=16, layer_indices=(4, 11, 17, 23)))
    teacher_dpt: DPTConfig = field(default_factory=lambda: DPTConfig(
        features=256, out_channels=(256, 512, 1024, 1024)))
    teacher_resolution: int = 490  # teacher input height when the frame is taller than this
    num_blocks: int = 4
    num_heads: int = 2
    mlp_expand: int = 2

    def validate(self) -> None:
        self.teacher_vit.validate()
        self.teacher_dpt.validate()
        _check(self.teacher_resolution > 0,
               f"fusion.teacher_resolution={self.teacher_resolution} must be positive")


@dataclass(frozen=True)
class MotionConfig:
    """Video Depth Anything's temporal head: four motion modules (temporal self-attention across
    frames, per token) inside the DPT decoder, on the projected levels 3 and 4 and on path_4 and path_3.

    ``window`` is the clip length the published models were trained on: the length of the
    sinusoidal frame-position table and of the official offline windows. The official streaming
    mode caches the attention inputs of past frames: each frame attends to ``stream_head`` of the
    oldest cached frames and the ``window - 1 - stream_head`` newest, out of a queue of
    ``stream_slots`` (the official code's 2, 29 and 42 for a 32-frame window).
    """

    num_heads: int = 8
    num_blocks: int = 1  # transformer blocks per motion module
    attention_blocks: int = 2  # temporal attentions per block (each with its own cache)
    norm_groups: int = 32  # GroupNorm groups at each module's input
    window: int = 32
    overlap: int = 10  # frames shared by consecutive offline windows
    interp: int = 8  # of which, frames blended between the two windows
    stream_head: int = 2
    stream_slots: int = 42
    # True: the head's ReLU output is depth in metres (the metric models); False: relative inverse depth
    metric: bool = False

    def validate(self) -> None:
        _check(self.num_heads > 0 and self.num_blocks > 0 and self.attention_blocks > 0 and self.norm_groups > 0,
               "motion.num_heads, num_blocks, attention_blocks and norm_groups must be positive")
        _check(0 < self.interp <= self.overlap < self.window,
               f"motion.interp={self.interp}, overlap={self.overlap} and window={self.window} must satisfy "
               "0 < interp <= overlap < window")
        _check(0 < self.stream_head < self.window - 1 and self.stream_slots >= self.window,
               f"motion.stream_head={self.stream_head} must be in (0, window - 1) and "
               f"motion.stream_slots={self.stream_slots} at least window={self.window}")

    @property
    def stream_tail(self) -> int:
        """How many of the newest cached frames a streamed frame attends to."""
        return self.window - 1 - self.stream_head


#: evaluation resolutions: a dataset's official sizes ("base", "2k") or the frames' own ("native")
EVAL_PRESETS = ("base", "2k", "native")
#: compute precisions: name -> torch dtype name (autocast below fp32). fp32 is IEEE float32 on
#: CUDA (TF32 off); tf32 is float32 with TF32 matmuls and convolutions on CUDA (fp32 elsewhere).
PRECISIONS = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class InputConfig:
    """How frames are prepared for the model, and at which size it is run and evaluated.

    This is part of the model (stored in our checkpoints), so a model under any name is run the
    way it was trained: nothing downstream decides from the model's name.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet RGB mean, on [0, 1] values
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    short_side: int = 0  # 0: native resolution (long side capped); N: the short side is scaled to N
    long_side_cap: int = 2044  # native resolution: longer sides are scaled down to this
    eval_preset: str = "base"  # the official evaluation resolution of this model (one of EVAL_PRESETS)
    # Video Depth Anything's rule for elongated frames: when long/short exceeds max_aspect, the short
    # side becomes round(int(short_side * aspect_scale / ratio) / patch) * patch. 0: no such rule.
    max_aspect: float = 0.0
    aspect_scale: float = 0.0
    clip: bool = True  # clamp resized pixels to [0, 1] (False: keep bicubic overshoot, as cv2 on floats does)

    def validate(self) -> None:
        _check(len(self.mean) == 3 and len(self.std) == 3 and all(s > 0 for s in self.std),
               f"input.mean={self.mean} and input.std={self.std} need 3 values each, std positive")
        _check(self.short_side >= 0, f"input.short_side={self.short_side} must be 0 (native) or a size in pixels")
        _check(self.long_side_cap > 0, f"input.long_side_cap={self.long_side_cap} must be positive")
        _check(self.max_aspect == 0 or (self.max_aspect >= 1 and self.aspect_scale > 0 and self.short_side > 0),
               f"input.max_aspect={self.max_aspect} must be 0 (no rule) or at least 1, with input.aspect_scale > 0 "
               "and a short_side")
        _check(self.eval_preset in EVAL_PRESETS,
               f"input.eval_preset={self.eval_preset!r}; use one of {', '.join(EVAL_PRESETS)}")


@dataclass(frozen=True)
class ModelConfig:
    """A whole model. ``temporal=None`` is the per-frame Depth Anything V2 model."""

    name: str = "custom"
    vit: ViTConfig = field(default_factory=ViTConfig)
    dpt: DPTConfig = field(default_factory=DPTConfig)
    temporal: Optional[TemporalConfig] = None
    fusion: Optional[FusionConfig] = None
    input: InputConfig = field(default_factory=InputConfig)
    motion: Optional[MotionConfig] = None  # Video Depth Anything's temporal attention head

    @property
    def unit(self) -> OutputUnit:
        """What the model outputs (a row of :data:`UNITS`), from its head."""
        if self.motion is not None and self.motion.metric:
            return UNITS["metric-depth"]
        return self.dpt.unit

    def validate(self) -> "ModelConfig":
        self.vit.validate()
        self.dpt.validate()
        self.input.validate()
        if self.temporal is not None:
            self.temporal.validate()
            d_inner = self.temporal.expand * self.dpt.features
            _check(d_inner % self.temporal.headdim == 0,
                   f"temporal.expand*dpt.features={d_inner} is not divisible by temporal.headdim={self.temporal.headdim}")
        if self.motion is not None:
            self.motion.validate()
            _check(self.temporal is None and self.fusion is None,
                   "motion (Video Depth Anything's head) excludes temporal and fusion (FlashDepth's parts)")
            _check(self.dpt.max_depth == 0, "a motion head ends in a ReLU: set motion.metric, not dpt.max_depth")
            widths = (self.dpt.out_channels[2], self.dpt.out_channels[3], self.dpt.features)
            _check(all(c % self.motion.norm_groups == 0 and c % self.motion.num_heads == 0 for c in widths),
                   f"the motion modules' widths {widths} must be multiples of motion.norm_groups="
                   f"{self.motion.norm_groups} and motion.num_heads={self.motion.num_heads}")
        if self.fusion is not None:
            self.fusion.validate()
            _check(self.dpt.features % self.fusion.num_heads == 0,
                   f"dpt.features={self.dpt.features} is not divisible by fusion.num_heads={self.fusion.num_heads}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes).validate()

    def with_metric_head(self, max_depth: float) -> "ModelConfig":
        """This model with a metric head: its output layer ends in a sigmoid times ``max_depth``
        metres (the Depth Anything V2 metric models' head), so it outputs metric depth; the
        parameters are the same, so the same checkpoint layout loads. ``max_depth`` 0 gives the
        relative head back. The name says which head it has."""
        _check(math.isfinite(max_depth) and max_depth >= 0,
               f"max_depth={max_depth!r} must be a depth cap in metres (e.g. 20 indoors, 80 outdoors), or 0 for "
               "the relative head")
        base = self.name.split("+metric")[0]
        name = f"{base}+metric{max_depth:g}m" if max_depth > 0 else base
        return self.replace(name=name, dpt=dataclasses.replace(self.dpt, max_depth=float(max_depth)))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def to_plain(value: Any) -> Any:
    """Dataclass dicts -> JSON-safe data (tuples become lists)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from plain data, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
                          f"valid keys of {where or cls.__name__ + '.'}: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    obj = cls(**kwargs)
    if hasattr(obj, "validate") and cls is ModelConfig:
        obj.validate()
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0]
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def model_config_from_dict(data: Any) -> ModelConfig:
    return from_dict(ModelConfig, data)
