"""The table of known checkpoints (data): :data:`KNOWN_WEIGHTS`, name -> :class:`KnownWeights`.

``sd15`` and ``sd21`` (diffusers folders) and the DINOv2 ViT-S/B/L/G 14 files, each with and
without registers (``dinov2_vitb14``, ``dinov2_vitb14_reg``, ...): where each is downloaded
from, the names it is looked for under in the weights folder, and which files a diffusers
download fetches (:func:`diffusers_allow_patterns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: the diffusers components the features need (one weights file each)
SD_COMPONENTS = ("unet", "vae")


@dataclass(frozen=True)
class KnownWeights:
    """One known checkpoint.

    ``kind`` is ``"diffusers"`` (a folder with unet/ and vae/) or ``"dinov2"`` (one file).
    ``hub_ids[0]`` is the id downloaded; further ids are aliases also looked up in the cache.
    ``local_names`` are the folder (diffusers) or file (dinov2) names looked for in the weights
    folder, in order of preference. ``hub_file`` is the file taken from a dinov2 hub repo.
    """

    name: str
    kind: Literal["diffusers", "dinov2"]
    hub_ids: tuple[str, ...]
    local_names: tuple[str, ...]
    description: str
    timm_name: str | None = None
    hub_file: str | None = None
    official_file: str | None = None

    @property
    def hub_id(self) -> str:
        return self.hub_ids[0]


def _known_table() -> dict[str, KnownWeights]:
    table: dict[str, KnownWeights] = {
        "sd15": KnownWeights(
            "sd15",
            "diffusers",
            ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5"),
            ("stable-diffusion-v1-5",),
            "Stable Diffusion 1.5 (the SD+DINO reference)",
        ),
        "sd21": KnownWeights(
            "sd21",
            "diffusers",
            ("stabilityai/stable-diffusion-2-1",),
            ("stable-diffusion-2-1",),
            "Stable Diffusion 2.1 (768-v; used by DIFT)",
        ),
    }
    sizes = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    for letter, size in sizes.items():
        for reg in (False, True):
            name = f"dinov2_vit{letter}14" + ("_reg" if reg else "")
            timm_name = f"vit_{size}_patch14" + ("_reg4" if reg else "") + "_dinov2.lvd142m"
            official = f"dinov2_vit{letter}14" + ("_reg4" if reg else "") + "_pretrain.pth"
            table[name] = KnownWeights(
                name,
                "dinov2",
                (f"timm/{timm_name}",),
                (f"{timm_name}.safetensors", official),
                f"DINOv2 ViT-{letter.upper()}/14" + (" with 4 registers" if reg else ""),
                timm_name=timm_name,
                hub_file="model.safetensors",
                official_file=official,
            )
    return table


KNOWN_WEIGHTS: dict[str, KnownWeights] = _known_table()


def diffusers_allow_patterns(text_encoder: bool = True, variant: str | None = None) -> list[str]:
    """The files ``download`` fetches for a diffusers model (no EMA/bin/duplicate variants)."""
    v = f".{variant}" if variant else ""
    pats = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        f"unet/diffusion_pytorch_model{v}.safetensors",
        "vae/config.json",
        f"vae/diffusion_pytorch_model{v}.safetensors",
    ]
    if text_encoder:
        pats += ["text_encoder/config.json", f"text_encoder/model{v}.safetensors", "tokenizer/*"]
    return pats
