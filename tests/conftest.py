import pytest
import torch

from flashdepth import DPTConfig, FusionConfig, ModelConfig, TemporalConfig, ViTConfig

TINY_VIT = ViTConfig(embed_dim=32, depth=4, num_heads=2, pos_grid=4, layer_indices=(0, 1, 2, 3))
TINY_DPT = DPTConfig(features=16, out_channels=(8, 16, 32, 32), head_hidden=8)
# downsample 0.25 and chunk 16 give several tokens and several chunks per frame at 140x196
TINY_TEMPORAL_S = TemporalConfig(dpt_layer=1, num_blocks=2, downsample=0.25, d_state=8, expand=2, headdim=8, chunk_size=16)
TINY_TEMPORAL_L = TemporalConfig(dpt_layer=3, num_blocks=2, downsample=0.1, d_state=8, expand=2, headdim=8, chunk_size=16)
TINY_FUSION = FusionConfig(
    teacher_vit=ViTConfig(embed_dim=48, depth=4, num_heads=2, pos_grid=4, layer_indices=(0, 1, 2, 3)),
    teacher_dpt=DPTConfig(features=24, out_channels=(8, 16, 24, 24), head_hidden=8),
    teacher_resolution=98, num_blocks=2, num_heads=2, mlp_expand=2)

TINY = {
    "dav2": ModelConfig(name="tiny-dav2", vit=TINY_VIT, dpt=TINY_DPT),
    "s": ModelConfig(name="tiny-s", vit=TINY_VIT, dpt=TINY_DPT, temporal=TINY_TEMPORAL_S),
    "l": ModelConfig(name="tiny-l", vit=TINY_VIT, dpt=TINY_DPT, temporal=TINY_TEMPORAL_L),
    "full": ModelConfig(name="tiny-full", vit=TINY_VIT, dpt=TINY_DPT, temporal=TINY_TEMPORAL_S, fusion=TINY_FUSION),
}


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Non-zero random weights everywhere, the zero-initialised output layers included.

    Norm weights stay near 1 and Mamba's A_log / dt_bias in their usual ranges so activations
    keep a sane size; everything else gets a random value, so a wrong formula shows.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)
        if name.endswith("A_log"):
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 4.0)  # slow decay, so the state matters
        elif name.endswith("dt_bias"):
            p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 3.0)
        elif name.endswith(".gamma") or (name.endswith("weight") and "norm" in name.rsplit(".", 2)[-2]):
            p.copy_(1.0 + 0.1 * noise)
        elif p.dim() >= 2:
            p.copy_(noise / p[0].numel() ** 0.5)  # unit gain per layer: activations keep their size
        else:
            p.copy_(scale * noise)
    return model


@torch.no_grad()
def spread_depth(model: torch.nn.Module, bias: float = 2.0) -> torch.nn.Module:
    """Random weights put most outputs below the final ReLU (inverse depth 0: all sky); a positive
    bias on the last layer spreads them over about (0, 4), so 3D outputs and pictures have points."""
    model.depth_head.scratch.output_conv2[2].bias.fill_(bias)
    return model


def frames(t: int, height: int = 140, width: int = 196, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, t, 3, height, width, generator=g)


@pytest.fixture
def tiny():
    return TINY
