"""The tiny fixed SD-1.5-like UNet + VAE of the CleanDIFT golden test (golden/cleandift_features.json).

CleanDIFT's UNet code hard-codes SD 1.5's GroupNorm(32), a 1280-wide time embedding, 8 heads
and a 768-wide cross-attention, so the tiny model keeps those and shrinks the widths to
(32, 64, 96, 96); its diffusers config is :data:`TINY_UNET`. Every tensor is filled from its own
name (:func:`fill_by_name`), so the weights do not depend on diffusers' initialisation order.
The same UNet was built from CleanDIFT's own blocks (``src/min_sd15.py``) to make the golden
numbers, and loaded its state dict strictly.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

TINY_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [32, 64, 96, 96],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 8,
    "time_embedding_dim": 1280,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

TINY_VAE = {
    "act_fn": "silu",
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "out_channels": 3,
    "sample_size": 64,
    "scaling_factor": 0.18215,  # SD's, which CleanDIFT's src/ae.py hard-codes
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

IMAGE_SIZE = 64
IMAGE_SEED = 5
COND_SEED = 6
NOISE_SEED = 42  # our seed; the posterior sample is drawn from NOISE_SEED + 2**20


def fill_by_name(module: nn.Module, salt: str) -> nn.Module:
    """Overwrite every parameter and buffer of ``module`` with values drawn from a generator
    seeded by ``crc32(salt + name)``: weights ``N(0, 1/fan_in)``, norm scales ``1 + N(0, 0.02)``,
    biases ``N(0, 0.02)``."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            gen = torch.Generator().manual_seed(zlib.crc32((salt + name).encode()))
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
            if t.ndim >= 2:
                value = noise / (t[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                value = 1 + 0.02 * noise
            else:
                value = 0.02 * noise
            t.copy_(value)
    return module


def tiny_models():
    """``(unet, vae)``: the diffusers tiny UNet and VAE with their by-name weights."""
    from corr.extractors.sd_models import import_diffusers

    d = import_diffusers()
    unet = fill_by_name(d.UNet2DConditionModel.from_config(TINY_UNET), "unet.")
    vae = fill_by_name(d.AutoencoderKL.from_config(TINY_VAE), "vae.")
    return unet.eval(), vae.eval()


def tiny_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels (1, 3, 64, 64) in [0, 1], conditioning (1, 77, 768))``."""
    pixels = torch.rand(
        1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(IMAGE_SEED)
    )
    cond = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(COND_SEED))
    return pixels, cond
