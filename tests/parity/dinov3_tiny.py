"""The tiny fixed DINOv3 ViT of the DINOv3 golden test (golden/dinov3_features.json).

Meta's ViT-S/16 recipe (``dinov3/hub/backbones.py`` ``dinov3_vits16``: patch 16, 4 storage
tokens, rotary base 100 with "separate" coordinates, layer scale, LayerNorm eps 1e-5, masked
k bias) at width 48, depth 2, 3 heads. Its state dict (Meta's layout, :data:`META_KEYS` order)
is filled from each tensor's name (:func:`fill_by_name`), with the q/k/v biases zero as in the
released ViT-S/B/L/H+ files, which timm's DINOv3 architectures have no biases for.
"""

from __future__ import annotations

import zlib

import torch

IMAGE_SIZE = 96
IMAGE_SEED = 11
WIDTH, DEPTH, HEADS = 48, 2, 3
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def fill_by_name(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of the same keys and shapes whose values come from generators seeded by
    ``crc32(name)``: ``N(0, 1/fan_in)`` for matrices, ``1 + N(0, 0.02)`` for norm scales,
    ``N(0, 0.1)`` for layer scales, tokens and other vectors; q/k/v biases zero. The rotary
    periods and the k-bias mask (buffers, not weights) are kept."""
    out = {}
    for name, t in state.items():
        if not t.is_floating_point() or name.endswith(("periods", "bias_mask")):
            out[name] = t.clone()
            continue
        gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
        if name.endswith("qkv.bias"):
            value = torch.zeros(t.shape)
        elif t.ndim >= 2 and not name.endswith(("_token", "tokens")):
            value = noise / (t[0].numel() ** 0.5)
        elif "norm" in name and name.endswith("weight"):
            value = 1 + 0.02 * noise
        else:
            value = 0.1 * noise
        out[name] = value
    return out


def tiny_pixels() -> torch.Tensor:
    """``(1, 3, 96, 96)`` pixels in [0, 1]."""
    gen = torch.Generator().manual_seed(IMAGE_SEED)
    return torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
