"""Named model variants and where their published weights live: the one table of models.

Everything a model needs to be run and evaluated (architecture, input normalisation, processing
resolution, evaluation preset) is in its :class:`~flashdepth.config.ModelConfig`; this table adds
only the name, a description and where the weights come from. Importing it does not import torch
(the command line builds its choices from it).
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Optional

from ..config import DPTConfig, FusionConfig, InputConfig, ModelConfig, MotionConfig, TemporalConfig, ViTConfig
from ..errors import UnknownModelError

VIT_S = ViTConfig(embed_dim=384, depth=12, num_heads=6, layer_indices=(2, 5, 8, 11))
VIT_B = ViTConfig(embed_dim=768, depth=12, num_heads=12, layer_indices=(2, 5, 8, 11))
VIT_L = ViTConfig(embed_dim=1024, depth=24, num_heads=16, layer_indices=(4, 11, 17, 23))
DPT_S = DPTConfig(features=64, out_channels=(48, 96, 192, 384))
DPT_B = DPTConfig(features=128, out_channels=(96, 192, 384, 768))
DPT_L = DPTConfig(features=256, out_channels=(256, 512, 1024, 1024))
TEMPORAL_S = TemporalConfig(dpt_layer=1, expand=4, headdim=32)
TEMPORAL_L = TemporalConfig(dpt_layer=3, expand=2, headdim=64)
NATIVE = InputConfig()  # native resolution, long side capped at 2044
SHORT_518 = InputConfig(short_side=518)  # Depth Anything V2's transform: short side 518
FULL_2K = InputConfig(eval_preset="2k")  # the Full model is evaluated at 2K

FLASHDEPTH_REPO = "Eyeline-Research/FlashDepth"

# Video Depth Anything's transform: the short side to 518 (bicubic, no clipping), except that frames
# more elongated than 1.78:1 get a short side of round(int(518 * 1.777 / ratio) / 14) * 14.
VDA_INPUT = InputConfig(short_side=518, max_aspect=1.78, aspect_scale=1.777, clip=False)
VDA_REPO = "depth-anything"

# The demonstration model trained by this package on synthetic scenes (docs/tiny-synthetic.md):
# 126x224 frames give a 9x16 token grid; path_3 (18x32) pooled by 1/4 gives the SSM 4x8 tokens. The
# convolutional stem: from scratch, the patch stem's model learned little more than a prior map
# (docs/tiny-synthetic.md#fit).
VIT_TINY = ViTConfig(embed_dim=96, depth=6, num_heads=3, layer_indices=(1, 3, 4, 5), pos_grid=16, stem="conv")
DPT_TINY = DPTConfig(features=32, out_channels=(32, 64, 128, 128), head_hidden=16)
TEMPORAL_TINY = TemporalConfig(dpt_layer=1, num_blocks=2, downsample=0.25, d_state=64, expand=2, headdim=16,
                               chunk_size=64, mlp_ratio=2)
# Any frame is brought to the scale it was trained at: the long side to 224 pixels (126x224 frames
# go in as they are), and evaluated at that size.
TINY_INPUT = InputConfig(eval_preset="native", long_side_cap=224)


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"

    @property
    def location(self) -> str:
        return f"{self.repo_id}/{self.filename}"


@dataclass(frozen=True)
class PackagedFile:
    """Weights shipped inside the package (``flashdepth/assets/``): loaded offline."""

    filename: str

    @property
    def location(self) -> str:
        return f"bundled: flashdepth/assets/{self.filename}"


@dataclass(frozen=True)
class ModelSpec:
    config: ModelConfig
    weights: HubFile | PackagedFile
    description: str
    license: str = ""  # of the published weights, where their publisher states one


_MODELS: dict[str, ModelSpec] = {
    "flashdepth": ModelSpec(
        ModelConfig(name="flashdepth", vit=VIT_S, dpt=DPT_S, temporal=TEMPORAL_S, fusion=FusionConfig(),
                    input=FULL_2K),
        HubFile(FLASHDEPTH_REPO, "flashdepth/iter_43002.pth"),
        "FlashDepth (Full): ViT-S at full resolution fused with a frozen ViT-L at short side 490"),
    "flashdepth-l": ModelSpec(
        ModelConfig(name="flashdepth-l", vit=VIT_L, dpt=DPT_L, temporal=TEMPORAL_L, input=SHORT_518),
        HubFile(FLASHDEPTH_REPO, "flashdepth-l/iter_10001.pth"),
        "FlashDepth-L: ViT-L, Mamba after the last DPT layer"),
    "flashdepth-s": ModelSpec(
        ModelConfig(name="flashdepth-s", vit=VIT_S, dpt=DPT_S, temporal=TEMPORAL_S, input=NATIVE),
        HubFile(FLASHDEPTH_REPO, "flashdepth-s/iter_14001.pth"),
        "FlashDepth-S: ViT-S, Mamba after DPT layer 1"),
    "depth-anything-v2-small": ModelSpec(
        ModelConfig(name="depth-anything-v2-small", vit=VIT_S, dpt=DPT_S, input=SHORT_518),
        HubFile("depth-anything/Depth-Anything-V2-Small", "depth_anything_v2_vits.pth"),
        "Depth Anything V2 ViT-S (per frame, no temporal state)", "Apache-2.0"),
    "depth-anything-v2-base": ModelSpec(
        ModelConfig(name="depth-anything-v2-base", vit=VIT_B, dpt=DPT_B, input=SHORT_518),
        HubFile("depth-anything/Depth-Anything-V2-Base", "depth_anything_v2_vitb.pth"),
        "Depth Anything V2 ViT-B (per frame, no temporal state)", "CC-BY-NC-4.0"),
    "depth-anything-v2-large": ModelSpec(
        ModelConfig(name="depth-anything-v2-large", vit=VIT_L, dpt=DPT_L, input=SHORT_518),
        HubFile("depth-anything/Depth-Anything-V2-Large", "depth_anything_v2_vitl.pth"),
        "Depth Anything V2 ViT-L (per frame, no temporal state)", "CC-BY-NC-4.0"),
    **{f"depth-anything-v2-metric-{scene}-{size}": ModelSpec(
        ModelConfig(name=f"depth-anything-v2-metric-{scene}-{size}", vit=vit,
                    dpt=dataclasses.replace(dpt, max_depth=cap), input=SHORT_518),
        HubFile(f"depth-anything/Depth-Anything-V2-Metric-{data}-{size.title()}",
                f"depth_anything_v2_metric_{data.lower()}_{code}.pth"),
        f"Depth Anything V2 metric {scene} ViT-{code[-1].upper()}: depth in metres up to {cap:.0f} m "
        f"(fine-tuned on {'Hypersim' if scene == 'indoor' else 'Virtual KITTI 2'}; per frame)", licence)
        for scene, data, cap in (("indoor", "Hypersim", 20.0), ("outdoor", "VKITTI", 80.0))
        for size, code, vit, dpt, licence in (("small", "vits", VIT_S, DPT_S, "Apache-2.0"),
                                              ("base", "vitb", VIT_B, DPT_B, "CC-BY-NC-4.0"),
                                              ("large", "vitl", VIT_L, DPT_L, "CC-BY-NC-4.0"))},
    **{f"{prefix}video-depth-anything-{size}": ModelSpec(
        ModelConfig(name=f"{prefix}video-depth-anything-{size}", vit=vit, dpt=dpt, input=VDA_INPUT,
                    motion=MotionConfig(metric=bool(prefix))),
        HubFile(f"{VDA_REPO}/{prefix.title()}Video-Depth-Anything-{size.title()}",
                f"{prefix.replace('-', '_')}video_depth_anything_{code}.pth"),
        f"Video Depth Anything{' metric' if prefix else ''} ViT-{code[-1].upper()}: Depth Anything V2 with temporal "
        f"attention; {'depth in metres' if prefix else 'relative inverse depth'} (streaming; 32-frame windows offline)",
        licence)
        for prefix in ("", "metric-")
        for size, code, vit, dpt, licence in (("small", "vits", VIT_S, DPT_S, "Apache-2.0"),
                                              ("base", "vitb", VIT_B, DPT_B, "CC-BY-NC-4.0"),
                                              ("large", "vitl", VIT_L, DPT_L, "CC-BY-NC-4.0"))},
    "flashdepth-tiny-synthetic": ModelSpec(
        ModelConfig(name="flashdepth-tiny-synthetic", vit=VIT_TINY, dpt=DPT_TINY, temporal=TEMPORAL_TINY,
                    input=TINY_INPUT),
        PackagedFile("flashdepth-tiny-synthetic.safetensors"),
        "demonstration model trained here on synthetic scenes only (bundled, offline; not for real video)"),
}


def list_models() -> list[str]:
    return list(_MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModelError(name, list(_MODELS)) from None


def get_config(name: str) -> ModelConfig:
    return get_spec(name).config


def create_model(name_or_config: str | ModelConfig, device: Optional[str] = None):
    """Build a model with freshly initialised weights (no download)."""
    from ..models import build_model

    config = name_or_config if isinstance(name_or_config, ModelConfig) else get_config(name_or_config)
    return build_model(config) if device is None else build_model(config).to(device)
