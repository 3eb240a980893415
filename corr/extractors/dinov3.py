"""DINOv3 token features (Siméoni et al., 2025) through timm: the registered extractors
``"dinov3_vits16"``, ``"dinov3_vits16plus"``, ``"dinov3_vitb16"``, ``"dinov3_vitl16"``,
``"dinov3_vith16plus"``, ``"dinov3_vit7b16"`` and ``"dinov3-tiny"`` (random, for tests).

The model is timm's ``vit_*_patch16_dinov3`` (an ``Eva`` ViT, timm >= 1.0.20), patch 16, with
rotary position embeddings (so any grid works without resampling anything) and 1 class + 4
register tokens.

- **Layer and facet**: the patch tokens of the **last block, after the final LayerNorm**
  (``forward_intermediates(indices=1, norm=True)``), i.e. DINOv3's own
  ``get_intermediate_layers(n=1, norm=True)`` and the ``last_hidden_state`` of its
  transformers port; ``norm=False`` gives the tokens before it (as :mod:`~corr.extractors.dino`
  takes DINOv2's). The class and register tokens are dropped (timm splits off all
  ``num_prefix_tokens``).
- **Input size**: 960 px by default, a 60 x 60 grid: the grid of DINOv2 at 840 px (patch 14)
  and of SD's layer 8 at 960 px, so DINOv3 replaces DINOv2 in SD+DINO without changing the
  fused grid, and the matching frame is SD's own 960 px frame. Under a protocol the size is
  the protocol's DINOv2 grid times 16 (:func:`corr.protocols.extractor_knobs`).
- **Normalisation**: ImageNet mean/std (the ``pretrained_cfg`` of the LVD-1689M weights).
- **Weights**: timm's ``model.safetensors`` (hub ``timm/vit_*_patch16_dinov3.lvd1689m``) or
  Meta's official ``dinov3_*_pretrain_lvd1689m-<hash>.pth`` (converted by timm's
  ``checkpoint_filter_fn``); both are licence-gated (the not-found error says how to get them).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..weights import KNOWN_WEIGHTS, WeightsFileError, load_state_dict, resolve
from .dino import DinoExtractor, import_timm
from .registry import register_extractor, register_named

PATCH = 16
DEFAULT_SIZE = 960  # 60 x 60 tokens

# registered name -> timm architecture (the weights names live in corr.weights.KNOWN_WEIGHTS)
DINOV3_ARCHS = {
    name: known.timm_name.split(".")[0]
    for name, known in KNOWN_WEIGHTS.items()
    if known.kind == "dinov3" and known.timm_name
}


def load_dinov3_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load timm-format or Meta's official DINOv3 weights into a timm DINOv3 ``Eva``
    (strict, up to the rotary-embedding buffers timm recomputes). An official file whose q/k/v
    biases are not zero is refused for an architecture without them (timm's ``_qkvb`` ones
    have them), instead of dropping them."""
    from timm.models.eva import checkpoint_filter_fn

    has_bias = any(name.endswith("q_bias") for name, _ in model.named_parameters())
    biased = [
        k for k, v in state_dict.items() if k.endswith("qkv.bias") and bool(v.abs().max() > 0)
    ]
    if biased and not has_bias:
        raise ValueError(
            f"DINOv3 weights do not fit the architecture: {biased[0]} is not zero but this "
            "architecture has no q/k/v biases (use timm's *_dinov3_qkvb model)"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # timm prints the biases it skips
            sd = checkpoint_filter_fn(dict(state_dict), model)
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except (ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"DINOv3 weights do not fit the architecture: {err}") from err
    missing = [k for k in missing if not k.startswith("rope.")]
    if missing or unexpected:
        raise ValueError(
            "DINOv3 weights do not fit the architecture: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )


def create_dinov3(arch: str, input_size: int, init_seed: int = 0, **overrides: Any) -> nn.Module:
    """timm's DINOv3 architecture ``arch`` at ``input_size`` with random weights seeded by
    ``init_seed`` (``overrides`` change its configuration, e.g. a tiny width)."""
    if input_size % PATCH:
        raise ValueError(f"DINOv3 input size {input_size} must be a multiple of {PATCH}")
    timm = import_timm()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        model = timm.create_model(
            arch, pretrained=False, img_size=input_size, num_classes=0, **overrides
        )
    return model.eval()


def build_dinov3_model(
    name: str = "dinov3_vitb16",
    pretrained: bool = True,
    *,
    input_size: int = DEFAULT_SIZE,
    path: str | Path | None = None,
    init_seed: int = 0,
    allow_download: bool | None = None,
) -> tuple[nn.Module, str]:
    """``(timm model at input_size, weights id)`` for a registered DINOv3 name; real weights
    (``pretrained=True``: explicit ``path``, weights folder, caches, hub) or the full
    architecture with random weights seeded by ``init_seed``."""
    if name not in DINOV3_ARCHS:
        raise KeyError(f"unknown DINOv3 model {name!r}; known: {', '.join(DINOV3_ARCHS)}")
    found = (
        resolve(name, path=path, kind="dinov3", allow_download=allow_download)
        if pretrained
        else None
    )
    model = create_dinov3(DINOV3_ARCHS[name], input_size, init_seed)
    if found is None:
        return model, f"random:{name}:init_seed={int(init_seed)}"
    try:
        load_dinov3_state_dict(model, load_state_dict(found.path))
    except WeightsFileError:
        raise
    except ValueError as err:  # weights of another architecture: name the file
        raise WeightsFileError(f"{found.path}: {err}") from None
    return model, found.weights_id


def _make(
    name: str,
    pretrained: bool,
    *,
    input_size: int = DEFAULT_SIZE,
    dtype: str | torch.dtype = "fp32",
    path: str | Path | None = None,
    init_seed: int = 0,
    norm: bool = True,
    device: str | torch.device | None = None,
    allow_download: bool | None = None,
) -> DinoExtractor:
    model, model_id = build_dinov3_model(
        name,
        pretrained,
        input_size=input_size,
        path=path,
        init_seed=init_seed,
        allow_download=allow_download,
    )
    ext = DinoExtractor(
        model, input_size=input_size, dtype=dtype, model_id=model_id, name=name, norm=norm
    )
    return ext.to(device) if device is not None else ext


register_named(
    DINOV3_ARCHS,
    _make,
    lambda name: (
        f"{KNOWN_WEIGHTS[name].description}: last-block tokens after the final norm (960 px -> 60 x 60)."
    ),
    globals(),
)


@register_extractor("dinov3-tiny")
def dinov3_tiny(
    pretrained: bool = False,
    *,
    input_size: int = 192,
    init_seed: int = 0,
    embed_dim: int = 48,
    depth: int = 2,
    norm: bool = True,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device | None = None,
) -> DinoExtractor:
    """timm's DINOv3 ViT-S/16 architecture shrunk (width, depth), random, for tests."""
    if pretrained:
        raise ValueError(
            "'dinov3-tiny' is a tiny random test model with no pretrained weights: "
            "pass pretrained=False"
        )
    model = create_dinov3(
        "vit_small_patch16_dinov3", input_size, init_seed, embed_dim=embed_dim, depth=depth,
        num_heads=3,
    )  # fmt: skip
    model_id = f"random:dinov3-tiny:embed_dim={embed_dim}:depth={depth}:init_seed={init_seed}"
    ext = DinoExtractor(
        model, input_size=input_size, dtype=dtype, model_id=model_id, name="dinov3-tiny", norm=norm
    )
    return ext.to(device) if device is not None else ext
