"""DINOv2 token features (docs/protocol.md §3).

The descriptor is the **token output of the last block before the final LayerNorm**, class and
register tokens dropped, as a ``(B, C, T/14, T/14)`` map (768 x 60 x 60 for ViT-B/14 at 840 px).
It is taken with timm's ``forward_intermediates(x, indices=1, norm=False, output_fmt="NCHW",
intermediates_only=True)``: ``indices=1`` selects the last block, ``norm=False`` skips the final
norm, and all ``num_prefix_tokens`` (class + registers) are split off before the reshape.

Position embeddings: DINOv2 was trained at 518 px (a 37 x 37 grid). The official model
interpolates its position embedding at every forward pass with
``F.interpolate(mode="bicubic", scale_factor=(n + 0.1) / 37)`` and no antialiasing; this
module does exactly that **once** when the weights are loaded (timm's own resampling uses a
target size and antialiasing, which gives slightly different values), and builds the timm
model at the extractor's input size. ``dynamic_img_size`` stays on, so other input sizes still
work (timm then resamples from the stored grid).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._compat import ensure_torchvision_importable
from ..weights import KNOWN_WEIGHTS, WeightsFileError, load_state_dict, resolve
from .base import Extractor, FeatureMaps, module_fingerprint
from .registry import register_extractor, register_named
from .sd import dtype_name, parse_dtype

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH = 14
TRAIN_GRID = 37  # 518 / 14

# registered name -> timm architecture (the weights names live in corr.weights.KNOWN_WEIGHTS)
DINOV2_ARCHS = {
    name: known.timm_name.split(".")[0]
    for name, known in KNOWN_WEIGHTS.items()
    if known.kind == "dinov2" and known.timm_name
}


def import_timm():
    """``import timm``, after the torchvision fix of :mod:`corr._compat` where it is needed."""
    ensure_torchvision_importable()
    import timm

    return timm


class DinoExtractor(Extractor):
    """DINO last-block patch tokens: ``{"dino": (B, C, T/p, T/p)}`` for patch size ``p``.

    Args:
        model: a timm ViT with ``forward_intermediates`` (DINOv2's ``VisionTransformer``,
            patch 14; DINOv3's ``Eva``, patch 16), ideally built at ``input_size``.
        input_size: the letterbox side ``T`` (840 in the reference), a multiple of ``p``.
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        model_id: the weights' identity for :meth:`config` (default: a parameter fingerprint).
        norm: apply the model's final norm to the tokens (DINOv2 here: no, as the reference;
            DINOv3: yes, :mod:`corr.extractors.dinov3`).
    """

    group = "dino"
    reduce = False
    resample = "lanczos"

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: int = 840,
        dtype: str | torch.dtype = "fp32",
        model_id: str | None = None,
        name: str = "dinov2",
        norm: bool = False,
    ) -> None:
        super().__init__()
        self.model = model.to(parse_dtype(dtype)).eval().requires_grad_(False)
        self.patch_size = int(model.patch_embed.patch_size[0])
        self.input_size = int(input_size)
        if self.input_size % self.patch_size:
            raise ValueError(
                f"{name} input size {input_size} must be a multiple of {self.patch_size}"
            )
        self.norm = bool(norm)
        self.model_id = model_id
        self.name = name
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """The network's dtype (follows ``.to(dtype)`` / ``.half()`` of the module)."""
        return next(self.model.parameters()).dtype

    def config(self) -> dict[str, Any]:
        if self.model_id is None:
            self.model_id = "fingerprint:" + module_fingerprint(self.model)
        return {
            "class": "DinoExtractor",
            "model": self.model_id,
            "facet": "token",
            "block": len(self.model.blocks) - 1,
            "norm": self.norm,
            "dtype": dtype_name(self.dtype),
            "input_size": self.input_size,
            "resample": self.resample,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }

    def extract(self, pixels: torch.Tensor, category: str | None = None) -> FeatureMaps:
        h, w = pixels.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"{self.name} input {h}x{w} must be a multiple of {self.patch_size}")
        x = (pixels.to(self.mean.device, torch.float32) - self.mean) / self.std
        (tokens,) = self.model.forward_intermediates(
            x.to(self.dtype),
            indices=1,
            norm=self.norm,
            output_fmt="NCHW",
            intermediates_only=True,
        )
        return {"dino": tokens.float()}


# --------------------------------------------------------------------------------------------
# Building the model
# --------------------------------------------------------------------------------------------


def resample_pos_embed_dinov2(
    pos_embed: torch.Tensor, num_prefix: int, grid: tuple[int, int], offset: float = 0.1
) -> torch.Tensor:
    """Interpolate a square ``(1, prefix + M*M, C)`` position embedding to ``grid`` as the
    official DINOv2 ``interpolate_pos_encoding`` does (bicubic, ``scale_factor=(n + 0.1)/M``,
    no antialiasing, in float32)."""
    prefix, patch = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    n_old = patch.shape[1]
    m = int(math.isqrt(n_old))
    if m * m != n_old:
        raise ValueError(f"position embedding of {n_old} patch tokens is not a square grid")
    if (m, m) == tuple(grid):
        return pos_embed
    dim = patch.shape[-1]
    dtype = patch.dtype
    out = F.interpolate(
        patch.float().reshape(1, m, m, dim).permute(0, 3, 1, 2),
        scale_factor=((grid[0] + offset) / m, (grid[1] + offset) / m),
        mode="bicubic",
        antialias=False,
    )
    if tuple(out.shape[-2:]) != tuple(grid):
        raise RuntimeError(
            f"position embedding resampled to {tuple(out.shape[-2:])}, expected {grid}"
        )
    out = out.permute(0, 2, 3, 1).reshape(1, -1, dim).to(dtype)
    return torch.cat([prefix, out], dim=1)


def load_dinov2_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load timm-format or official-format (``dinov2_*_pretrain.pth``) DINOv2 weights into a
    timm ``VisionTransformer`` of any input size (strict)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    sd = dict(state_dict)
    official = "mask_token" in sd
    try:
        if "pos_embed" in sd and getattr(model, "pos_embed", None) is not None:
            # official files always carry a class-token position; timm register models do not
            num_prefix = 1 if official or not getattr(model, "no_embed_class", False) else 0
            grid = model.patch_embed.grid_size
            sd["pos_embed"] = resample_pos_embed_dinov2(sd["pos_embed"], num_prefix, grid)
        # timm's filter converts the official layout (drops mask_token, folds the class position
        # into cls_token for register models, renames SwiGLU w12/w3); timm files pass as they are
        sd = checkpoint_filter_fn(sd, model)
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except (ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"DINOv2 weights do not fit the architecture: {err}") from err
    if missing or unexpected:
        raise ValueError(
            "DINOv2 weights do not fit the architecture: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )


def build_dinov2_model(
    name: str = "dinov2_vitb14",
    pretrained: bool = True,
    *,
    input_size: int = 840,
    path: str | Path | None = None,
    init_seed: int = 0,
    allow_download: bool | None = None,
) -> tuple[nn.Module, str]:
    """``(timm model at input_size, weights id)`` for a registered DINOv2 name.

    ``pretrained=True`` resolves weights through :mod:`corr.weights` (explicit ``path``,
    weights folder: timm ``.safetensors`` or official ``.pth``, caches, hub) and raises
    ``WeightsNotFoundError`` when there are none; ``pretrained=False`` is the full
    architecture with random weights seeded by ``init_seed`` (for benchmarks).
    """
    if name not in DINOV2_ARCHS:
        raise KeyError(f"unknown DINOv2 model {name!r}; known: {', '.join(DINOV2_ARCHS)}")
    if input_size % PATCH:
        raise ValueError(f"DINOv2 input size {input_size} must be a multiple of {PATCH}")
    found = (
        resolve(name, path=path, kind="dinov2", allow_download=allow_download)
        if pretrained
        else None
    )
    timm = import_timm()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        model = timm.create_model(
            DINOV2_ARCHS[name],
            pretrained=False,
            img_size=input_size,
            num_classes=0,
            dynamic_img_size=True,
        )
    if found is None:
        return model.eval(), f"random:{name}:init_seed={int(init_seed)}"
    try:
        load_dinov2_state_dict(model, load_state_dict(found.path))
    except WeightsFileError:
        raise
    except ValueError as err:  # weights of another architecture: name the file
        raise WeightsFileError(f"{found.path}: {err}") from None
    return model.eval(), found.weights_id


def build_tiny_dinov2(
    input_size: int = 168,
    reg_tokens: int = 0,
    init_seed: int = 0,
    embed_dim: int = 48,
    depth: int = 2,
) -> nn.Module:
    """A tiny random DINOv2-like timm ``VisionTransformer`` (patch 14, layer scale) for tests."""
    import_timm()
    from timm.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        model = VisionTransformer(
            img_size=input_size,
            patch_size=PATCH,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=3,
            init_values=0.1,
            num_classes=0,
            reg_tokens=reg_tokens,
            no_embed_class=reg_tokens > 0,
            dynamic_img_size=True,
        )
    return model.eval()


# --------------------------------------------------------------------------------------------
# Registered factories
# --------------------------------------------------------------------------------------------


def _make(
    name: str,
    pretrained: bool,
    *,
    input_size: int = 840,
    dtype: str | torch.dtype = "fp32",
    path: str | Path | None = None,
    init_seed: int = 0,
    device: str | torch.device | None = None,
    allow_download: bool | None = None,
) -> DinoExtractor:
    model, model_id = build_dinov2_model(
        name,
        pretrained,
        input_size=input_size,
        path=path,
        init_seed=init_seed,
        allow_download=allow_download,
    )
    ext = DinoExtractor(model, input_size=input_size, dtype=dtype, model_id=model_id, name=name)
    return ext.to(device) if device is not None else ext


register_named(
    DINOV2_ARCHS,
    _make,
    lambda name: (
        f"{KNOWN_WEIGHTS[name].description}: last-block tokens before the final norm (840 px -> 60 x 60)."
    ),
    globals(),
)


@register_extractor("dinov2-tiny")
def dinov2_tiny(
    pretrained: bool = False,
    *,
    input_size: int = 168,
    reg_tokens: int = 0,
    init_seed: int = 0,
    embed_dim: int = 48,
    depth: int = 2,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device | None = None,
) -> DinoExtractor:
    """A tiny random DINOv2-like ViT for tests (timm VisionTransformer, patch 14; no weights)."""
    if pretrained:
        raise ValueError(
            "'dinov2-tiny' is a tiny random test model with no pretrained weights: pass pretrained=False"
        )
    model = build_tiny_dinov2(input_size, reg_tokens, init_seed, embed_dim, depth)
    model_id = f"random:dinov2-tiny:embed_dim={embed_dim}:depth={depth}:reg={reg_tokens}:init_seed={init_seed}"
    ext = DinoExtractor(
        model, input_size=input_size, dtype=dtype, model_id=model_id, name="dinov2-tiny"
    )
    return ext.to(device) if device is not None else ext
