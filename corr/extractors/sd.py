"""Stable Diffusion UNet decoder features: the registered extractors ``"sd15"``, ``"sd21"``,
``"sd"`` (any diffusers folder or hub id) and ``"sd-tiny"`` (random, for tests), and the public
face of the SD code, whose parts live in:

- :mod:`corr.extractors.sd_extractor`: :class:`SDExtractor` (VAE encoding, noise, the hooked
  UNet pass, tiling, ``extract``);
- :mod:`corr.extractors.sd_layers`: the decoder layer map (which module gives ``"sd{L}"``);
- :mod:`corr.extractors.freeu`: FreeU, by diffusers' rule or GeoAware-SC's;
- :mod:`corr.extractors.conditioning`: prompts and the CLIP text encoder;
- :mod:`corr.extractors.sd_models`: bundled configs, dtypes, the scheduler, building UNet + VAE.

Their public names are re-exported here (``from corr.extractors.sd import SDExtractor,
build_sd_models, sd15``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .freeu import (
    FREEU_GEOAWARE,
    FREEU_RULES,
    fourier_filter,
    freeu_layer,
    freeu_stages,
    geoaware_freeu_channels,
    geoaware_freeu_stage,
    parse_freeu,
)
from .registry import register_extractor
from .sd_extractor import SDExtractor, stitch_tiles
from .sd_layers import DecoderTap, decoder_channels, decoder_taps, sd_layer_module, vae_downsampling
from .sd_models import (
    CONFIG_DIR,
    DEFAULT_SCHEDULER,
    SDModels,
    build_sd_models,
    dtype_name,
    load_config,
    make_scheduler,
    parse_dtype,
)

__all__ = [
    "sd15",
    "sd21",
    "sd",
    "sd_tiny",
    "SDExtractor",
    "stitch_tiles",
    "CONFIG_DIR",
    "DEFAULT_SCHEDULER",
    "SDModels",
    "build_sd_models",
    "dtype_name",
    "load_config",
    "make_scheduler",
    "parse_dtype",
    "DecoderTap",
    "decoder_channels",
    "decoder_taps",
    "sd_layer_module",
    "vae_downsampling",
    "FREEU_GEOAWARE",
    "FREEU_RULES",
    "fourier_filter",
    "freeu_layer",
    "freeu_stages",
    "geoaware_freeu_channels",
    "geoaware_freeu_stage",
    "parse_freeu",
]


# --------------------------------------------------------------------------------------------
# Registered factories
# --------------------------------------------------------------------------------------------


def _make(
    name: str,
    pretrained: bool,
    *,
    path: str | Path | None = None,
    dtype: str | torch.dtype = "fp32",
    init_seed: int = 0,
    device: str | torch.device | None = None,
    allow_download: bool | None = None,
    **kwargs: Any,
) -> SDExtractor:
    models = build_sd_models(
        name,
        pretrained,
        dtype,
        path=path,
        init_seed=init_seed,
        vae_encoder_only=True,
        allow_download=allow_download,
    )
    ext = SDExtractor(
        models.unet,
        models.vae,
        scheduler=models.scheduler,
        model_id=models.model_id,
        text_source=models.folder,
        dtype=dtype,
        weights_record=models.record,
        **kwargs,
    )
    return ext.to(device) if device is not None else ext


@register_extractor("sd15")
def sd15(pretrained: bool = True, **kwargs: Any) -> SDExtractor:
    """Stable Diffusion 1.5 UNet decoder features (the SD+DINO reference: layers 2, 5, 8 at 960 px)."""
    return _make("sd15", pretrained, **kwargs)


@register_extractor("sd21")
def sd21(pretrained: bool = True, **kwargs: Any) -> SDExtractor:
    """Stable Diffusion 2.1 UNet decoder features (as used by DIFT)."""
    return _make("sd21", pretrained, **kwargs)


@register_extractor("sd")
def sd(pretrained: bool = True, model: str | Path | None = None, **kwargs: Any) -> SDExtractor:
    """UNet decoder features of any diffusers SD model: model= a local folder or a hub id."""
    if model is None:
        raise ValueError("the 'sd' extractor needs model= (a local diffusers folder or a hub id)")
    return _make(str(model), pretrained, **kwargs)


@register_extractor("sd-tiny")
def sd_tiny(pretrained: bool = False, input_size: int = 192, **kwargs: Any) -> SDExtractor:
    """A tiny random SD-like UNet + VAE for tests (same classes and layer map; no weights)."""
    if pretrained:
        raise ValueError(
            "'sd-tiny' is a tiny random test model with no pretrained weights: pass pretrained=False"
        )
    return _make("sd-tiny", False, input_size=input_size, **kwargs)
