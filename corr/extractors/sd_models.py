"""Building the Stable Diffusion models the SD extractor runs: UNet, VAE and noise scheduler.

Holds the bundled model configs (package data ``corr/extractors/configs/*.json``), the dtype
names (``"fp32"``, ``"bf16"``, ``"fp16"``), the DDPM scheduler (scaled-linear betas 0.00085 ->
0.012 over 1000 steps unless a model folder's scheduler config says otherwise), and
:func:`build_sd_models`: real weights resolved through :mod:`corr.weights` (never random ones
in their place), or the full architecture with seeded random weights (``pretrained=False``).
"""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .._compat import ensure_torchvision_importable
from ..weights import WeightsFileError, load_state_dict, resolve

#: the bundled model configs (package data ``corr/extractors/configs/*.json``)
CONFIG_DIR = resources.files("corr.extractors") / "configs"

DEFAULT_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"fp32"``/``"bf16"``/``"fp16"`` (or the torch dtype) -> ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"unsupported dtype {dtype}; use fp32, bf16 or fp16")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use fp32, bf16 or fp16")
    return _DTYPES[key]


def dtype_name(dtype: str | torch.dtype) -> str:
    """The short name (``"fp32"``, ``"bf16"``, ``"fp16"``) of a dtype or dtype name."""
    return _DTYPE_NAMES[parse_dtype(dtype)]


def load_config(name: str) -> dict[str, Any]:
    """A bundled model config, e.g. ``load_config("sd15_unet")``."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bundled config {path}")
    return json.loads(path.read_text())


def cast_module(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating parameters to ``dtype`` (in place); a no-op (no diffusers warning) when
    already there."""
    if all(p.dtype == dtype for p in module.parameters() if p.is_floating_point()):
        return module
    return nn.Module.to(module, dtype)  # diffusers' .to() warns about fp32 modules SD has none of


def import_diffusers():
    """The ``diffusers`` module, imported after making torchvision importable for it."""
    ensure_torchvision_importable()
    import diffusers

    return diffusers


def make_scheduler(config: dict[str, Any] | None = None):
    """A DDPM scheduler with the betas of ``config`` (a diffusers scheduler config) or SD's."""
    cfg = dict(DEFAULT_SCHEDULER)
    for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas"):
        if config and config.get(k) is not None:
            cfg[k] = config[k]
    return import_diffusers().DDPMScheduler(**cfg)


# --------------------------------------------------------------------------------------------
# Building the models
# --------------------------------------------------------------------------------------------

_BUNDLED = {"sd15": "sd15", "sd21": "sd21", "sd-tiny": "sd_tiny"}


class SDModels(NamedTuple):
    """What :func:`build_sd_models` returns.

    ``model_id`` identifies the weights (for caches); ``folder`` is the local diffusers folder
    the weights came from (None for random weights), where a text encoder may be found;
    ``record`` what :meth:`corr.weights.ResolvedWeights.record` says about them (a mirror's or
    a local copy's file sums; None for the official repository's).
    """

    unet: nn.Module
    vae: nn.Module
    scheduler: Any
    model_id: str
    folder: Path | None
    record: dict[str, Any] | None = None


def random_models(
    unet_cfg: dict[str, Any], vae_cfg: dict[str, Any], init_seed: int
) -> tuple[nn.Module, nn.Module]:
    """``(UNet, VAE)`` built from diffusers configs with random weights seeded by
    ``init_seed`` (the global RNG state is left as it was)."""
    d = import_diffusers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        unet = d.UNet2DConditionModel.from_config(unet_cfg)
        vae = d.AutoencoderKL.from_config(vae_cfg)
    return unet, vae


def _weights_variant(folder: Path, component: str) -> tuple[str | None, bool]:
    """``(variant, use_safetensors)`` for the files present in ``folder/component``."""
    names = {p.name for p in (folder / component).iterdir()}
    for variant in (None, "fp16"):
        v = f".{variant}" if variant else ""
        if f"diffusion_pytorch_model{v}.safetensors" in names:
            return variant, True
        if f"diffusion_pytorch_model{v}.bin" in names:
            return variant, False  # diffusers reads .bin with torch.load(weights_only=True)
    return None, True


def _load_component(cls, folder: Path, component: str, dtype: torch.dtype):
    """One diffusers component; a weights file that cannot be loaded (corrupt, truncated, or a
    pickle that would call code, refused unrun: ``.bin`` files are read with
    ``weights_only=True``) raises :class:`~corr.weights.WeightsFileError` naming the file."""
    variant, safetensors = _weights_variant(folder, component)
    # without accelerate diffusers falls back to a normal load anyway (and logs a warning)
    low_mem = importlib.util.find_spec("accelerate") is not None
    try:
        return cls.from_pretrained(
            folder,
            subfolder=component,
            torch_dtype=dtype,
            variant=variant,
            use_safetensors=safetensors,
            local_files_only=True,
            low_cpu_mem_usage=low_mem,
        )
    except Exception as err:
        v = f".{variant}" if variant else ""
        weights = (
            folder
            / component
            / f"diffusion_pytorch_model{v}.{'safetensors' if safetensors else 'bin'}"
        )
        if weights.is_file():
            load_state_dict(weights)  # raises the file's own one-line error when it is bad
        text = str(err).strip().splitlines()
        raise WeightsFileError(
            f"{folder / component}: diffusers could not load this {component} "
            f"({type(err).__name__}: {text[0][:200] if text else ''}); check that the folder "
            "is a complete diffusers model of a supported architecture"
        ) from None


def _encoder_only(vae: nn.Module) -> nn.Module:
    """Drop the VAE decoder (never used for features) to save memory."""
    vae.decoder = nn.Identity()
    if getattr(vae, "post_quant_conv", None) is not None:
        vae.post_quant_conv = nn.Identity()
    return vae


def build_sd_models(
    name_or_path: str = "sd15",
    pretrained: bool = True,
    dtype: str | torch.dtype = torch.float32,
    *,
    path: str | Path | None = None,
    init_seed: int = 0,
    vae_encoder_only: bool = False,
    allow_download: bool | None = None,
) -> SDModels:
    """Build (UNet, VAE, scheduler) for ``"sd15"``, ``"sd21"``, ``"sd-tiny"``, a local diffusers
    folder or a hub id.

    ``pretrained=True`` resolves real weights through :mod:`corr.weights` (explicit ``path``,
    weights folder, Hugging Face cache, hub) and raises ``WeightsNotFoundError`` when there are
    none; it never falls back to random weights. ``pretrained=False`` builds the full
    architecture from the bundled config (or the folder's config) with random weights seeded
    by ``init_seed``, for benchmarks. ``"sd-tiny"`` exists only with random weights.
    """
    d = import_diffusers()
    torch_dtype = parse_dtype(dtype)
    name = str(name_or_path)
    if name == "sd-tiny" and pretrained:
        raise ValueError(
            "'sd-tiny' is a tiny random test model with no pretrained weights: pass pretrained=False"
        )
    if not pretrained:
        if name in _BUNDLED:
            prefix = _BUNDLED[name]
            unet_cfg, vae_cfg = load_config(f"{prefix}_unet"), load_config(f"{prefix}_vae")
            sched_cfg = load_config(f"{prefix}_scheduler")
            source = f"bundled config {prefix}"
        else:
            folder = Path(path or name).expanduser()
            if (
                not (folder / "unet" / "config.json").is_file()
                or not (folder / "vae" / "config.json").is_file()
            ):
                raise ValueError(
                    f"pretrained=False for {name!r} needs its architecture: give a local diffusers "
                    "folder with unet/config.json and vae/config.json, or use sd15, sd21 or sd-tiny"
                )
            unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
            vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
            sc = folder / "scheduler" / "scheduler_config.json"
            sched_cfg = json.loads(sc.read_text()) if sc.is_file() else None
            source = f"config of {folder.resolve()}"
        unet, vae = random_models(unet_cfg, vae_cfg, init_seed)
        model_id = f"random:{name}:init_seed={int(init_seed)}"
        if name not in _BUNDLED:
            model_id = f"random:{source}:init_seed={int(init_seed)}"
        folder_out = None
        record = None
    else:
        found = resolve(name, path=path, kind="diffusers", allow_download=allow_download)
        folder_out = found.path
        unet = _load_component(d.UNet2DConditionModel, folder_out, "unet", torch_dtype)
        vae = _load_component(d.AutoencoderKL, folder_out, "vae", torch_dtype)
        sc = folder_out / "scheduler" / "scheduler_config.json"
        sched_cfg = json.loads(sc.read_text()) if sc.is_file() else None
        model_id = found.weights_id
        record = found.record()
    unet = cast_module(unet, torch_dtype).eval().requires_grad_(False)
    vae = cast_module(vae, torch_dtype).eval().requires_grad_(False)
    if vae_encoder_only:
        vae = _encoder_only(vae)
    return SDModels(unet, vae, make_scheduler(sched_cfg), model_id, folder_out, record)
