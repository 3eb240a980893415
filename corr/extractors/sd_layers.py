"""The Stable Diffusion UNet decoder layer map: which module gives feature ``"sd{L}"``.

Decoder layer numbering: the decoder has ``sum(len(up_block.resnets))`` layers (12 = 4 up
blocks x 3 for SD). Feature ``"sd{L}"`` is the **output of decoder layer L-1**, i.e. the input
of layer L, as in the reference: in block ``b = (L-1) // 3``, position ``j = (L-1) % 3``, the
module is ``attentions[j]`` (``resnets[j]`` in a block without attention), and for the last
position of a block with an upsampler it is ``upsamplers[0]`` (the input of the next block).
``L = 0`` is the mid block output. For SD 1.5 at 960 px::

    sd2  up_blocks[0].resnets[1]     1280 x 15 x 15
    sd5  up_blocks[1].attentions[1]  1280 x 30 x 30
    sd8  up_blocks[2].attentions[1]   640 x 60 x 60
    sd11 up_blocks[3].attentions[1]   320 x 120 x 120

Also here: the channels entering each decoder layer (what FreeU keys on), the VAE's
downsampling factor, and taking the tensor out of a module's output (for forward hooks).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn


class DecoderTap(NamedTuple):
    """Where feature ``sd{layer}`` is taken.

    ``consumer`` is ``(block, position)`` of the decoder layer that reads this output (None for
    the last one); FreeU (:func:`corr.extractors.freeu.freeu_stages`) acts on that layer's
    input. ``level`` is the number of 2x downsamplings of the latent at this tap.
    """

    layer: int
    path: str
    module: nn.Module
    consumer: tuple[int, int] | None
    level: int


def decoder_taps(unet: nn.Module) -> list[DecoderTap]:
    """The hookable decoder outputs of a diffusers ``UNet2DConditionModel``, index = layer."""
    n_down = sum(1 for blk in unet.down_blocks if getattr(blk, "downsamplers", None))
    positions = [(b, j) for b, blk in enumerate(unet.up_blocks) for j in range(len(blk.resnets))]
    raw: list[tuple[str, nn.Module, int]] = [("mid_block", unet.mid_block, n_down)]
    level = n_down
    for b, blk in enumerate(unet.up_blocks):
        attns = getattr(blk, "attentions", None)
        ups = getattr(blk, "upsamplers", None)
        n = len(blk.resnets)
        for j in range(n):
            if j == n - 1 and ups:
                level -= 1
                raw.append((f"up_blocks.{b}.upsamplers.0", ups[0], level))
            elif attns is not None and len(attns) > j:
                raw.append((f"up_blocks.{b}.attentions.{j}", attns[j], level))
            else:
                raw.append((f"up_blocks.{b}.resnets.{j}", blk.resnets[j], level))
    return [
        DecoderTap(i, path, mod, positions[i] if i < len(positions) else None, lvl)
        for i, (path, mod, lvl) in enumerate(raw)
    ]


def sd_layer_module(unet: nn.Module, layer: int) -> tuple[str, nn.Module]:
    """``(dotted path, module)`` hooked for feature ``sd{layer}``."""
    taps = decoder_taps(unet)
    if not 0 <= layer < len(taps):
        raise ValueError(f"SD layer {layer} out of range 0..{len(taps) - 1}")
    return taps[layer].path, taps[layer].module


def decoder_channels(unet: nn.Module) -> list[tuple[int, int]]:
    """``(channels of h, channels of the skip)`` entering each decoder layer (index = layer =
    3 b + j for resnet ``j`` of up block ``b`` in SD); the layer's resnet reads their
    concatenation. For SD 1.5: h 1280 x 7, 640 x 3, 320 x 2."""
    out: list[tuple[int, int]] = []
    mid = getattr(unet, "mid_block", None)
    if mid is not None and getattr(mid, "resnets", None):
        prev = int(mid.resnets[-1].out_channels)
    else:
        prev = int(unet.config.block_out_channels[-1])
    for blk in unet.up_blocks:
        for resnet in blk.resnets:
            out.append((prev, int(resnet.in_channels) - prev))
            prev = int(resnet.out_channels)
        ups = getattr(blk, "upsamplers", None)
        if ups:
            prev = int(getattr(ups[0], "out_channels", None) or prev)
    return out


def vae_downsampling(vae: nn.Module) -> int:
    """Pixels per latent cell of a diffusers ``AutoencoderKL`` (8 for SD)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def as_tensor(out: Any) -> torch.Tensor:
    """The tensor of a module's output: the tensor itself, the first item of a tuple or list,
    or the ``.sample`` of a diffusers output object."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "sample"):
        return out.sample
    raise TypeError(f"cannot take a tensor from a module output of type {type(out).__name__}")
