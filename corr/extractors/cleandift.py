"""CleanDIFT: noise-free diffusion features (Stracke et al., CVPR 2025): the registered
extractors ``"sd15-cleandift"``, ``"sd21-cleandift"`` and ``"sd-tiny-cleandift"`` (random, for
tests).

CleanDIFT fine-tunes the SD UNet (30 minutes, unsupervised) so that, given the **clean** latent
of an image, its decoder features match the noisy-input features of the original UNet averaged
over timesteps. The extraction here follows CleanDIFT's own code (read at CompVis/cleandift
@b070976b, ``src/sd_feature_extraction.py`` ``StableFeatureAligner.get_features`` and the
correspondence notebook; and its GeoAware-SC evaluation branch @6bc34e16,
``third_party/ODISE/odise/modeling/meta_arch/ldm.py`` ``LdmExtractor.forward`` with
``use_clean_features``, which gave the 69.99 SPair figure):

- **UNet**: SD 1.5 / 2.1's, with CleanDIFT's state dict ``cleandift_sd{15,21}_unet.safetensors``
  (hub repository ``CompVis/cleandift``) loaded strictly; VAE, scheduler config and text
  encoder are the base model's (``sd15`` / ``sd21`` from :mod:`corr.weights`, or
  ``base_path=`` a diffusers folder);
- **no noise**: the latent ``z_0`` goes into the UNet as it is (no ``q_sample``), so no noise
  seed and no noise ensemble (``clean=True`` of :class:`~corr.extractors.sd.SDExtractor`);
- **timestep conditioning** ``t = 261``: the GeoAware branch's fixed value; the main branch
  conditions on a learned scalar that starts at 261 (``t_init``) and is stored only in its
  ``*_full`` checkpoints, which this module does not read;
- **text conditioning**: the CLIP embedding of a caption: ``"A photo of a {category}"`` in both
  branches (the empty caption when there is no category), which the protocols set
  (:data:`corr.protocols.CLEANDIFT_KNOBS`);
- **layers**: CleanDIFT's ``us{k}`` is the output of decoder layer ``k - 1``, our ``sd{k}``
  (DIFT's ``us6`` = ``sd6``; GeoAware's ``s5, s4, s3`` = ``sd2, sd5, sd8``); FreeU off (the
  GeoAware branch comments it out);
- **latent**: the posterior mean (the GeoAware branch, via ODISE's deterministic encoding;
  ``latent="mean"``) or a posterior sample (the main branch's ``ae.encode``;
  ``latent="sample"``, seeded).

Everything else (input size, tiling, layers, fusion, flip, adapters) is the SD extractor's, so
CleanDIFT composes with every protocol: ``--protocol geoaware --sd sd15-cleandift``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..weights import KNOWN_WEIGHTS, WeightsFileError, load_state_dict, resolve
from .registry import register_extractor
from .sd_extractor import SDExtractor
from .sd_models import build_sd_models

#: the timestep CleanDIFT's UNet is conditioned on (the GeoAware branch's; the main branch's
#: learned value starts here)
CLEANDIFT_TIMESTEP = 261


def load_cleandift_unet(unet: torch.nn.Module, path: str | Path) -> None:
    """Load a CleanDIFT UNet state dict (``.safetensors``) into a diffusers UNet, strictly; a
    file that does not fit raises :class:`~corr.weights.WeightsFileError` naming it."""
    state = load_state_dict(path)
    try:
        unet.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise WeightsFileError(
            f"{path}: not a UNet state dict of this SD base model ({first[0][:200] if first else err}); "
            "sd15-cleandift needs SD 1.5 and cleandift_sd15_unet.safetensors, sd21-cleandift "
            "SD 2.1 and cleandift_sd21_unet.safetensors"
        ) from None


def build_cleandift(
    name: str,
    pretrained: bool = True,
    *,
    path: str | Path | None = None,
    base_path: str | Path | None = None,
    dtype: str | torch.dtype = "fp32",
    init_seed: int = 0,
    device: str | torch.device | None = None,
    allow_download: bool | None = None,
    timestep: int = CLEANDIFT_TIMESTEP,
    **kwargs: Any,
) -> SDExtractor:
    """The CleanDIFT extractor ``name`` (``"sd15-cleandift"`` / ``"sd21-cleandift"``).

    ``pretrained=True``: the base SD folder (``base_path`` or the known ``sd15``/``sd21``) and
    CleanDIFT's UNet file (``path`` or resolved through :mod:`corr.weights`); a missing one
    raises :class:`~corr.weights.WeightsNotFoundError`. ``pretrained=False``: the full SD
    architecture with random weights (benchmarks). Other keywords go to
    :class:`~corr.extractors.sd.SDExtractor` (``clean`` is always on).
    """
    if kwargs.pop("clean", True) is not True:
        raise ValueError(f"{name!r} always extracts clean features (no noise): drop clean=")
    known = KNOWN_WEIGHTS[name]
    base = str(known.base)
    models = build_sd_models(
        base,
        pretrained,
        dtype,
        path=base_path,
        init_seed=init_seed,
        vae_encoder_only=True,
        allow_download=allow_download,
    )
    model_id = f"random:{name}:init_seed={int(init_seed)}"
    record = None
    if pretrained:
        found = resolve(name, path=path, kind="unet-file", allow_download=allow_download)
        load_cleandift_unet(models.unet, found.path)
        model_id = f"{found.weights_id}+{models.model_id}"
        record = {k: v for k, v in (("unet", found.record()), ("base", models.record)) if v}
    ext = SDExtractor(
        models.unet,
        models.vae,
        scheduler=models.scheduler,
        model_id=model_id,
        text_source=models.folder,
        dtype=dtype,
        timestep=timestep,
        clean=True,
        weights_record=record or None,
        **kwargs,
    )
    return ext.to(device) if device is not None else ext


@register_extractor("sd15-cleandift")
def sd15_cleandift(pretrained: bool = True, **kwargs: Any) -> SDExtractor:
    """CleanDIFT on SD 1.5: noise-free UNet features of the clean latent at t = 261 (CVPR 2025)."""
    return build_cleandift("sd15-cleandift", pretrained, **kwargs)


@register_extractor("sd21-cleandift")
def sd21_cleandift(pretrained: bool = True, **kwargs: Any) -> SDExtractor:
    """CleanDIFT on SD 2.1: noise-free UNet features of the clean latent at t = 261 (CVPR 2025)."""
    return build_cleandift("sd21-cleandift", pretrained, **kwargs)


@register_extractor("sd-tiny-cleandift")
def sd_tiny_cleandift(
    pretrained: bool = False,
    *,
    input_size: int = 192,
    init_seed: int = 0,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device | None = None,
    timestep: int = CLEANDIFT_TIMESTEP,
    **kwargs: Any,
) -> SDExtractor:
    """A tiny random SD-like UNet + VAE in CleanDIFT's clean mode, for tests (no weights)."""
    if pretrained:
        raise ValueError(
            "'sd-tiny-cleandift' is a tiny random test model with no pretrained weights: "
            "pass pretrained=False"
        )
    if kwargs.pop("clean", True) is not True:
        raise ValueError("'sd-tiny-cleandift' always extracts clean features: drop clean=")
    models = build_sd_models("sd-tiny", False, dtype, init_seed=init_seed, vae_encoder_only=True)
    ext = SDExtractor(
        models.unet,
        models.vae,
        scheduler=models.scheduler,
        model_id=f"random:sd-tiny-cleandift:init_seed={int(init_seed)}",
        dtype=dtype,
        input_size=input_size,
        timestep=timestep,
        clean=True,
        **kwargs,
    )
    return ext.to(device) if device is not None else ext
