"""Stable Diffusion UNet decoder features (docs/protocol.md §2).

One extraction: pixels in [0, 1] -> [-1, 1] -> VAE posterior **mean** x ``scaling_factor``
(``latent="sample"``: a seeded posterior sample per draw, as DIFT) ->
``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps`` (DDPM ``add_noise``, scaled-linear betas
0.00085 -> 0.012 over 1000 steps unless the model folder's scheduler config says otherwise)
-> one UNet pass at timestep ``t`` with forward hooks on the decoder modules. The UNet is
stopped right after the last hooked module (a private exception raised from its hook), so the
later up blocks and ``conv_out`` never run.

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

Noise: ``eps`` for seed ``s`` is drawn once from a CPU ``torch.Generator`` seeded with ``s`` at
the latent's shape (batch 1) and reused for every image of the batch, as the reference reuses
one fixed ``eps``; ``ensemble=n`` averages the features of seeds ``s, s+1, ..., s+n-1``.

Conditioning: ``prompt=""`` (default) conditions on a **zero tensor** of shape
``(1, 77, cross_attention_dim)`` and loads no text encoder. This is a deliberate choice: it
is cheap and deterministic, but it is not the CLIP embedding of the empty caption (the
reference used ODISE's learned implicit caption, which is not part of SD). A non-empty prompt,
e.g. ``"a photo of a {category}"`` (``{category}`` filled from ``extract(..., category=)``), is
encoded with the model's CLIP text encoder + tokenizer (``transformers``), loaded lazily from
the same model folder on first use; ``prompt=" "`` gives the CLIP embedding of the empty
caption.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .._compat import ensure_torchvision_importable
from ..weights import WeightsFileError, WeightsNotFoundError, load_state_dict, resolve
from .base import Extractor, FeatureMaps, module_fingerprint
from .registry import register_extractor

logger = logging.getLogger(__name__)

#: the bundled model configs (package data ``corr/extractors/configs/*.json``)
CONFIG_DIR = resources.files("corr.extractors") / "configs"

DEFAULT_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
FREEU_GEOAWARE = {"s1": 0.9, "s2": 0.2, "b1": 1.2, "b2": 1.4}

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
    return _DTYPE_NAMES[parse_dtype(dtype)]


def load_config(name: str) -> dict[str, Any]:
    """A bundled model config, e.g. ``load_config("sd15_unet")``."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bundled config {path}")
    return json.loads(path.read_text())


def _cast(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating parameters to ``dtype``; a no-op (no diffusers warning) when already there."""
    if all(p.dtype == dtype for p in module.parameters() if p.is_floating_point()):
        return module
    return nn.Module.to(module, dtype)  # diffusers' .to() warns about fp32 modules SD has none of


def _diffusers():
    ensure_torchvision_importable()
    import diffusers

    return diffusers


# --------------------------------------------------------------------------------------------
# Decoder layer map
# --------------------------------------------------------------------------------------------


class DecoderTap(NamedTuple):
    """Where feature ``sd{layer}`` is taken.

    ``consumer`` is ``(block, position)`` of the decoder layer that reads this output (None for
    the last one); FreeU (:func:`freeu_stages`) acts on that layer's input.
    ``level`` is the number of 2x downsamplings of the latent at this tap.
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


# --------------------------------------------------------------------------------------------
# FreeU
# --------------------------------------------------------------------------------------------

FREEU_RULES = ("diffusers", "geoaware")
_FREEU_KEYS = ("s1", "s2", "b1", "b2")
_MISSING = object()


def parse_freeu(value: bool | str | None) -> str | None:
    """The FreeU rule of a ``freeu=`` value: None (off), ``"diffusers"`` or ``"geoaware"``.

    ``False``/``None``/``"off"``/``"none"``/``""`` are off; ``True`` is ``"diffusers"`` (its
    meaning before the rules existed)."""
    if value is None or value is False:
        return None
    if value is True:
        return "diffusers"
    key = str(value).strip().lower()
    if key in ("", "off", "none", "false", "0"):
        return None
    if key in ("true", "1", "on"):
        return "diffusers"
    if key not in FREEU_RULES:
        raise ValueError(f"freeu must be False, True or one of {FREEU_RULES}, got {value!r}")
    return key


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """FreeU's skip filter: multiply the ``2 threshold x 2 threshold`` lowest spatial
    frequencies (centred spectrum, around ``(H // 2, W // 2)``) of ``x`` ``(..., H, W)`` by
    ``scale``. Computed in float32 (float64 stays float64) and returned in ``x``'s dtype; in
    float32 this equals diffusers' ``fourier_filter`` and GeoAware's ``Fourier_filter`` bit for
    bit."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    dims = (-2, -1)
    spec = torch.fft.fftshift(torch.fft.fftn(work, dim=dims), dim=dims)
    cy, cx = spec.shape[-2] // 2, spec.shape[-1] // 2
    low = (..., slice(cy - threshold, cy + threshold), slice(cx - threshold, cx + threshold))
    spec[low] = spec[low] * scale
    out = torch.fft.ifftn(torch.fft.ifftshift(spec, dim=dims), dim=dims).real
    return out.to(x.dtype)


def freeu_layer(
    h: torch.Tensor, skip: torch.Tensor, b: float, s: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FreeU step before a decoder layer (out of place): the first half of the backbone
    channels of ``h`` times ``b``, the skip features through :func:`fourier_filter` with
    threshold 1 and ``scale=s``."""
    half = h.shape[1] // 2
    scaled = torch.cat([h[:, :half] * b, h[:, half:]], dim=1)
    return scaled, fourier_filter(skip, threshold=1, scale=s)


def _unet_config(unet_or_config: Any) -> dict[str, Any]:
    cfg = getattr(unet_or_config, "config", unet_or_config)
    return dict(cfg)


def geoaware_freeu_channels(unet_or_config: Any) -> tuple[int, int | None]:
    """The backbone widths GeoAware's channel rule keys on: ``(b1/s1 width, b2/s2 width)``.

    The reference hard-codes 1280 and 640, SD 1.x/2.x's two largest distinct
    ``block_out_channels``; for other models the two largest distinct widths are used (the
    second is None when all blocks have one width)."""
    widths = sorted({int(c) for c in _unet_config(unet_or_config)["block_out_channels"]})[::-1]
    return widths[0], (widths[1] if len(widths) > 1 else None)


def geoaware_freeu_stage(channels: int, widths: tuple[int, int | None]) -> int | None:
    """GeoAware's rule for one decoder layer: 1 (b1/s1) when its input ``h`` has ``widths[0]``
    channels, 2 (b2/s2) when it has ``widths[1]``, else None (untouched)."""
    if channels == widths[0]:
        return 1
    if widths[1] is not None and channels == widths[1]:
        return 2
    return None


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


def freeu_stages(unet: nn.Module, rule: str | None) -> dict[int, int]:
    """``{decoder layer: stage}`` for the layers FreeU acts on under ``rule`` (stage 1 uses
    b1/s1, stage 2 b2/s2). ``"diffusers"``: every layer of the up blocks with
    ``resolution_idx`` 0 / 1 (SD: layers 0-2 / 3-5). ``"geoaware"``: by the channel count of
    the layer's input h (SD: 1280 -> layers 0-6, 640 -> layers 7-9)."""
    rule = parse_freeu(rule)
    if rule is None:
        return {}
    stages: dict[int, int] = {}
    if rule == "diffusers":
        layer = 0
        for b, blk in enumerate(unet.up_blocks):
            idx = getattr(blk, "resolution_idx", None)
            idx = b if idx is None else idx
            for _ in blk.resnets:
                if idx in (0, 1):
                    stages[layer] = idx + 1
                layer += 1
        return stages
    widths = geoaware_freeu_channels(unet)
    for layer, (c_h, _) in enumerate(decoder_channels(unet)):
        stage = geoaware_freeu_stage(c_h, widths)
        if stage is not None:
            stages[layer] = stage
    return stages


def _freeu_pre_hook(c_h: int, b: float, s: float):
    """A forward pre-hook for a decoder resnet: FreeU on its input ``cat([h, skip])``."""

    def hook(module, args, kwargs):
        if args:
            x, rest = args[0], args[1:]
        else:
            x, rest = kwargs.pop("input_tensor"), ()
        if x.shape[1] != getattr(module, "in_channels", x.shape[1]) or x.shape[1] <= c_h:
            raise RuntimeError(f"FreeU: unexpected decoder input of {x.shape[1]} channels")
        h, skip = freeu_layer(x[:, :c_h], x[:, c_h:].contiguous(), b, s)
        x = torch.cat([h, skip], dim=1)
        if args:
            return (x, *rest), kwargs
        kwargs["input_tensor"] = x
        return args, kwargs

    return hook


def _suspend_freeu(unet: nn.Module) -> list[dict[str, Any]]:
    """Clear diffusers' FreeU attributes on the up blocks; returns them for :func:`_resume_freeu`."""
    saved = []
    for blk in unet.up_blocks:
        saved.append({k: getattr(blk, k, _MISSING) for k in _FREEU_KEYS})
        for k in _FREEU_KEYS:
            if hasattr(blk, k):
                setattr(blk, k, None)
    return saved


def _resume_freeu(unet: nn.Module, saved: list[dict[str, Any]]) -> None:
    for blk, attrs in zip(unet.up_blocks, saved, strict=True):
        for k, v in attrs.items():
            if v is _MISSING:
                if k in blk.__dict__:
                    delattr(blk, k)
            else:
                setattr(blk, k, v)


def vae_downsampling(vae: nn.Module) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


class _StopUNet(Exception):
    """Raised from the last hook to stop the UNet early."""


def _as_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if hasattr(out, "sample"):
        return out.sample
    raise TypeError(f"cannot take a tensor from a module output of type {type(out).__name__}")


def make_scheduler(config: dict[str, Any] | None = None):
    """A DDPM scheduler with the betas of ``config`` (a diffusers scheduler config) or SD's."""
    cfg = dict(DEFAULT_SCHEDULER)
    for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas"):
        if config and config.get(k) is not None:
            cfg[k] = config[k]
    return _diffusers().DDPMScheduler(**cfg)


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


def stitch_tiles(
    pixels: torch.Tensor, tile: int, extract: Callable[[torch.Tensor], FeatureMaps]
) -> FeatureMaps:
    """Run ``extract`` on the square crops of side ``tile`` at offsets ``{0, T - tile}^2`` of
    ``pixels`` ``(B, 3, T, T)`` and place each crop's maps at its offset, averaging overlaps
    (the reference's four 512 px crops of a 960 px image). Returns ``{name: (B, C, n, n)}``."""
    size = pixels.shape[-1]
    offsets = sorted({0, size - tile})
    sums: FeatureMaps = {}
    counts: FeatureMaps = {}
    for oy in offsets:
        for ox in offsets:
            maps = extract(pixels[..., oy : oy + tile, ox : ox + tile])
            for name, m in maps.items():
                s = tile // m.shape[-1]
                if name not in sums:
                    n = size // s
                    sums[name] = m.new_zeros(m.shape[0], m.shape[1], n, n)
                    counts[name] = m.new_zeros(1, 1, n, n)
                y, x, h, w = oy // s, ox // s, m.shape[-2], m.shape[-1]
                sums[name][..., y : y + h, x : x + w] += m
                counts[name][..., y : y + h, x : x + w] += 1
    return {name: sums[name] / counts[name] for name in sums}


class SDExtractor(Extractor):
    """Stable Diffusion UNet decoder features ``"sd{L}"`` -> ``(B, C, h, w)`` float32.

    Args:
        unet, vae: a diffusers ``UNet2DConditionModel`` and ``AutoencoderKL`` (loaded or built
            from a config); they are cast to ``dtype`` **in place** (share them only between
            extractors of the same dtype).
        layers: decoder layer numbers (0..number of decoder layers; see the module docstring),
            a sequence of ints or a string like ``"2,5,8"``.
        timestep: the diffusion timestep ``t`` (sd-dino 100, GeoAware 50, DIFT 261).
        ensemble: number of noise draws averaged (seeds ``seed .. seed+ensemble-1``).
        seed: seed of the first noise draw; one ``eps`` per seed is reused for every image.
        prompt: ``""`` = zero conditioning (no text encoder); else a text prompt, which may
            contain ``{category}``.
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` for UNet and VAE.
        tiled: parity with the reference: 4 crops of ``tile_size`` at offsets 0 and
            ``T - tile_size`` on each axis, each through VAE + UNet, feature maps placed at
            their offsets and overlaps averaged.
        freeu: FreeU during extraction, with ``freeu_params`` (default GeoAware's: s1 0.9,
            s2 0.2, b1 1.2, b2 1.4). ``False``/``None``: off. ``"diffusers"`` (also ``True``):
            diffusers' ``enable_freeu``, which picks the factors by up-block index (SD: b1/s1
            before decoder layers 0-2, b2/s2 before layers 3-5). ``"geoaware"``: GeoAware-SC's
            rule (its ODISE ``ldm.py``), which picks them by the channel count of the layer's
            input h (SD: 1280 channels, layers 0-6 -> b1/s1; 640, layers 7-9 -> b2/s2; see
            :func:`freeu_stages`). FreeU attributes already set on the UNet are suspended
            during extraction and restored afterwards; nothing is left on the UNet.
        freeu_inplace: with ``freeu``, also scale the captured maps that FreeU's backbone
            scaling changes in place before the next layer reads them: the first half of the
            channels of ``sd{L}`` times b1/b2 when decoder layer L is a FreeU layer. GeoAware's
            stored features are scaled so (its hooks keep the very tensor it scales in place).
            No effect without ``freeu``.
        xformers: use xformers attention when on CUDA and importable; otherwise PyTorch SDPA.
        input_size: the letterbox side ``T`` (960 in the reference).
        scheduler: a diffusers scheduler (its ``add_noise`` / ``alphas_cumprod`` are used) or a
            scheduler config dict; default: scaled-linear 0.00085 -> 0.012, 1000 steps.
        model_id: the weights' identity for :meth:`config` (default: a parameter fingerprint).
        text_source: a diffusers folder with ``text_encoder/`` and ``tokenizer/``, loaded when a
            non-empty prompt is first used; or pass ``text_encoder`` and ``tokenizer``.
    """

    group = "sd"
    reduce = True
    resample = "lanczos"

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        *,
        layers: Sequence[int] = (2, 5, 8),
        timestep: int = 100,
        ensemble: int = 1,
        latent: str = "mean",
        seed: int = 42,
        prompt: str = "",
        dtype: str | torch.dtype = "fp32",
        tiled: bool = False,
        tile_size: int = 512,
        freeu: bool | str | None = False,
        freeu_params: dict[str, float] | None = None,
        freeu_inplace: bool = True,
        xformers: bool = False,
        input_size: int = 960,
        scheduler: Any = None,
        model_id: str | None = None,
        text_source: str | Path | None = None,
        text_encoder: nn.Module | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        dtype = parse_dtype(dtype)
        self.unet = _cast(unet, dtype).eval().requires_grad_(False)
        self.vae = _cast(vae, dtype).eval().requires_grad_(False)
        self._taps = decoder_taps(self.unet)
        if isinstance(layers, str):
            layers = [x for x in layers.replace(",", " ").split() if x]
        layers = sorted({int(x) for x in layers})
        if not layers:
            raise ValueError("layers must name at least one decoder layer")
        for layer in layers:
            if not 0 <= layer < len(self._taps):
                raise ValueError(f"SD layer {layer} out of range 0..{len(self._taps) - 1}")
        self.layers = tuple(layers)
        if scheduler is None or isinstance(scheduler, dict):
            scheduler = make_scheduler(scheduler)
        self.scheduler = scheduler
        n_steps = len(scheduler.alphas_cumprod)
        if not 0 <= int(timestep) < n_steps:
            raise ValueError(f"timestep must be in 0..{n_steps - 1}, got {timestep}")
        self.timestep = int(timestep)
        if int(ensemble) < 1:
            raise ValueError(f"ensemble must be >= 1, got {ensemble}")
        self.ensemble = int(ensemble)
        if latent not in ("mean", "sample"):
            raise ValueError(f"latent must be 'mean' (posterior mean) or 'sample', got {latent!r}")
        self.latent = latent
        self.seed = int(seed)
        self.prompt = str(prompt)
        self.tiled = bool(tiled)
        self.tile_size = int(tile_size)
        self.freeu = parse_freeu(freeu)
        self.freeu_params = dict(FREEU_GEOAWARE if freeu_params is None else freeu_params)
        if self.freeu is not None:
            missing = [k for k in _FREEU_KEYS if k not in self.freeu_params]
            if missing:
                raise ValueError(f"freeu_params lacks {missing}")
        self.freeu_inplace = bool(freeu_inplace)
        self._freeu_stages = freeu_stages(self.unet, self.freeu)
        self.xformers = bool(xformers)
        self._xformers_on = False
        self.input_size = int(input_size)
        self.model_id = model_id
        self.text_source = None if text_source is None else str(text_source)
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self._prompt_cache: dict[str, torch.Tensor] = {}
        self._vae_factor = vae_downsampling(self.vae)
        self._unet_factor = 2 ** max(t.level for t in self._taps)
        self.check_size(self.input_size)

    # ---- sizes -------------------------------------------------------------------------------

    @property
    def max_stride(self) -> int:
        """Pixels per cell of the coarsest UNet grid; every pass must be a multiple of it."""
        return self._vae_factor * self._unet_factor

    def stride(self, layer: int) -> int:
        """Pixels per cell of feature ``sd{layer}``."""
        return self._vae_factor * 2 ** self._taps[layer].level

    def check_size(self, size: int) -> None:
        m = self.max_stride
        if self.tiled:
            coarse = max(self.stride(layer) for layer in self.layers)
            if self.tile_size % m:
                raise ValueError(f"tile_size {self.tile_size} must be a multiple of {m}")
            if size < self.tile_size:
                raise ValueError(f"tiled: input {size} is smaller than tile_size {self.tile_size}")
            if (size - self.tile_size) % coarse:
                raise ValueError(
                    f"tiled: input {size} - tile {self.tile_size} must be divisible by the "
                    f"coarsest feature stride {coarse} (e.g. 960 with 512 tiles and stride 64)"
                )
        elif size % m:
            raise ValueError(f"SD input size {size} must be a multiple of {m} (VAE x UNet stride)")

    # ---- config ------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's dtype (follows ``.to(dtype)`` / ``.half()`` of the module)."""
        return next(self.unet.parameters()).dtype

    @property
    def uses_category(self) -> bool:
        """True when the prompt contains ``{category}``: the features then depend on it, and the
        pipeline adds the category to the feature-cache key."""
        return "{category}" in self.prompt

    def config(self) -> dict[str, Any]:
        if self.model_id is None:
            self.model_id = "fingerprint:" + module_fingerprint(
                nn.ModuleList([self.unet, self.vae])
            )
        abar = float(self.scheduler.alphas_cumprod[self.timestep])
        cfg: dict[str, Any] = {
            "class": "SDExtractor",
            "model": self.model_id,
            "layers": list(self.layers),
            "timestep": self.timestep,
            "abar_t": round(abar, 8),
            "ensemble": self.ensemble,
            "seed": self.seed,
            "prompt": self.prompt,
            "dtype": dtype_name(self.dtype),
            "tiled": self.tiled,
            "freeu": self.freeu or False,
            "input_size": self.input_size,
            "resample": self.resample,
        }
        if self.latent != "mean":  # recorded only when not the default: older cache keys hold
            cfg["latent"] = self.latent
        if self.tiled:
            cfg["tile_size"] = self.tile_size
        if self.freeu:
            cfg["freeu_params"] = dict(sorted(self.freeu_params.items()))
            cfg["freeu_inplace"] = self.freeu_inplace
        if self.freeu == "geoaware":
            cfg["freeu_channels"] = list(geoaware_freeu_channels(self.unet))
        return cfg

    # ---- conditioning ------------------------------------------------------------------------

    def _cross_dim(self) -> int:
        dim = self.unet.config.cross_attention_dim
        return int(dim[0] if isinstance(dim, (list, tuple)) else dim)

    def prompt_text(self, category: str | None) -> str:
        if "{category}" in self.prompt:
            if category is None:
                raise ValueError(f"prompt {self.prompt!r} needs a category: pass category=")
            return self.prompt.replace("{category}", category)
        return self.prompt

    def _load_text_encoder(self) -> None:
        if self.text_source is None:
            raise ValueError(
                f"prompt {self.prompt!r} needs a CLIP text encoder, but this SD model has none "
                "(random or tiny weights, or built from objects): pass text_encoder= and "
                "tokenizer=, or use prompt='' (zero conditioning)"
            )
        folder = Path(self.text_source)
        missing = [s for s in ("text_encoder", "tokenizer") if not (folder / s).is_dir()]
        if missing:
            raise WeightsNotFoundError(
                f"prompt {self.prompt!r} needs {' and '.join(m + '/' for m in missing)} in {folder}; "
                "download them with `python -m corr.weights download NAME` (includes the text "
                "encoder unless --no-text-encoder), or use prompt='' (zero conditioning)"
            )
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as err:
            raise ImportError(
                f"a non-empty prompt ({self.prompt!r}) needs the `transformers` package for the CLIP "
                "text encoder: pip install transformers (or use prompt='')"
            ) from err
        self.tokenizer = CLIPTokenizer.from_pretrained(
            folder, subfolder="tokenizer", local_files_only=True
        )
        self.text_encoder = CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", local_files_only=True
        ).to(self.device)

    @torch.no_grad()
    def conditioning(self, category: str | None = None) -> torch.Tensor:
        """The ``(1, 77, cross_attention_dim)`` encoder hidden states for ``category``."""
        if self.prompt == "":
            return torch.zeros(1, 77, self._cross_dim(), device=self.device, dtype=self.dtype)
        text = self.prompt_text(category)
        if text not in self._prompt_cache:
            if self.text_encoder is None or self.tokenizer is None:
                self._load_text_encoder()
            enc = self.text_encoder
            enc.eval().requires_grad_(False)
            enc_device = next(enc.parameters()).device
            ids = self.tokenizer(
                text,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            out = enc(ids.to(enc_device))
            hidden = _as_tensor(
                out if not hasattr(out, "last_hidden_state") else out.last_hidden_state
            )
            self._prompt_cache[text] = hidden.float().cpu()
        return self._prompt_cache[text].to(self.device, self.dtype)

    # ---- the passes --------------------------------------------------------------------------

    def _maybe_xformers(self) -> None:
        if not self.xformers or self._xformers_on:
            return
        if self.device.type != "cuda":
            return  # CPU: PyTorch SDPA (xformers is CUDA-only)
        try:
            import xformers  # noqa: F401

            self.unet.enable_xformers_memory_efficient_attention()
            self._xformers_on = True
        except Exception as err:  # not importable or unusable: stay on SDPA
            logger.warning("xformers unavailable (%s); using PyTorch SDPA", err)
            self.xformers = False

    def noise(self, latent_shape: Sequence[int], seed: int) -> torch.Tensor:
        """The fixed ``eps`` of ``seed``: ``(1, C, h, w)`` float32 drawn on the CPU."""
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        return torch.randn((1, *latent_shape), generator=gen, dtype=torch.float32)

    def encode(self, pixels: torch.Tensor, with_std: bool = False):
        """``[0, 1]`` pixels -> scaled VAE posterior mean, float32 (and its std, scaled alike,
        with ``with_std``)."""
        x = (pixels * 2 - 1).to(self.device, self.dtype)
        dist = self.vae.encode(x).latent_dist
        mean = dist.mean.float()
        shift = getattr(self.vae.config, "shift_factor", None)
        if shift is not None:
            mean = mean - shift
        scale = self.vae.config.scaling_factor
        if with_std:
            return mean * scale, dist.std.float() * scale
        return mean * scale

    def unet_features(self, z_t: torch.Tensor, cond: torch.Tensor) -> FeatureMaps:
        """One UNet pass on noisy latents, stopped after the last hooked module."""
        captured: dict[int, torch.Tensor] = {}
        last = self.layers[-1]

        def make_hook(layer: int):
            def hook(_module, _inputs, output):
                captured[layer] = _as_tensor(output).detach().clone()
                if layer == last:
                    raise _StopUNet

            return hook

        handles = [
            self._taps[layer].module.register_forward_hook(make_hook(layer))
            for layer in self.layers
        ]
        saved_freeu = _suspend_freeu(self.unet)  # only this extractor's `freeu` applies
        try:
            if self.freeu == "diffusers":
                self.unet.enable_freeu(**{k: self.freeu_params[k] for k in _FREEU_KEYS})
            elif self.freeu == "geoaware":
                handles += self._geoaware_hooks()
            t = torch.full((z_t.shape[0],), self.timestep, device=z_t.device, dtype=torch.long)
            enc = cond.expand(z_t.shape[0], -1, -1)
            try:
                self.unet(z_t, t, encoder_hidden_states=enc, return_dict=False)
            except _StopUNet:
                pass
        finally:
            for h in handles:
                h.remove()
            _resume_freeu(self.unet, saved_freeu)
        missing = [layer for layer in self.layers if layer not in captured]
        if missing:
            raise RuntimeError(f"SD layers {missing} were not reached by the UNet forward pass")
        if self.freeu is not None and self.freeu_inplace:
            for layer in self.layers:
                stage = self._freeu_stages.get(layer)
                if stage is None:
                    continue
                # the backbone scaling of the layer's input, in place (as FreeU does to h)
                factor = self.freeu_params[f"b{stage}"]
                h = captured[layer]
                half = h.shape[1] // 2
                h[:, :half] = h[:, :half] * factor
        return {f"sd{layer}": captured[layer].float() for layer in self.layers}

    def _geoaware_hooks(self) -> list[Any]:
        """Forward pre-hooks applying GeoAware's FreeU rule to the decoder resnets' inputs."""
        channels = decoder_channels(self.unet)
        resnets = [r for blk in self.unet.up_blocks for r in blk.resnets]
        handles = []
        for layer, stage in sorted(self._freeu_stages.items()):
            b, s = self.freeu_params[f"b{stage}"], self.freeu_params[f"s{stage}"]
            hook = _freeu_pre_hook(channels[layer][0], b, s)
            handles.append(resnets[layer].register_forward_pre_hook(hook, with_kwargs=True))
        return handles

    def features(self, pixels: torch.Tensor, cond: torch.Tensor) -> FeatureMaps:
        """Encode once, then average the UNet features over the ensemble's noise draws.

        With ``latent="sample"`` (DIFT) draw ``k`` also takes its own sample of the VAE
        posterior, ``mean + std * n_k``, ``n_k`` drawn from seed ``seed + k`` on a generator
        separate from the noise's (offset by 2**20), so every draw is reproducible."""
        if self.latent == "sample":
            mean, std = self.encode(pixels, with_std=True)
        else:
            mean, std = self.encode(pixels), None
        t = torch.tensor([self.timestep], dtype=torch.long)
        total: FeatureMaps = {}
        for k in range(self.ensemble):
            z0 = mean
            if std is not None:
                n = self.noise(mean.shape[1:], self.seed + k + 2**20).to(mean.device)
                z0 = mean + std * n.expand_as(mean)
            eps = self.noise(z0.shape[1:], self.seed + k).to(z0.device).expand_as(z0)
            z_t = self.scheduler.add_noise(z0, eps, t.to(z0.device))
            maps = self.unet_features(z_t.to(self.dtype), cond)
            for name, m in maps.items():
                total[name] = m if name not in total else total[name] + m
        if self.ensemble > 1:
            total = {name: m / self.ensemble for name, m in total.items()}
        return total

    def tiled_features(self, pixels: torch.Tensor, cond: torch.Tensor) -> FeatureMaps:
        """Reference parity: crops at offsets {0, T - tile}^2, overlaps averaged."""
        return stitch_tiles(pixels, self.tile_size, lambda crop: self.features(crop, cond))

    def extract(self, pixels: torch.Tensor, category: str | None = None) -> FeatureMaps:
        if pixels.shape[-1] != pixels.shape[-2]:
            raise ValueError(f"SD expects a square letterbox, got {tuple(pixels.shape[-2:])}")
        self.check_size(pixels.shape[-1])
        self._maybe_xformers()
        cond = self.conditioning(category)
        if self.tiled:
            return self.tiled_features(pixels, cond)
        return self.features(pixels, cond)


# --------------------------------------------------------------------------------------------
# Building the models
# --------------------------------------------------------------------------------------------

_BUNDLED = {"sd15": "sd15", "sd21": "sd21", "sd-tiny": "sd_tiny"}


class SDModels(NamedTuple):
    """What :func:`build_sd_models` returns.

    ``model_id`` identifies the weights (for caches); ``folder`` is the local diffusers folder
    the weights came from (None for random weights), where a text encoder may be found.
    """

    unet: nn.Module
    vae: nn.Module
    scheduler: Any
    model_id: str
    folder: Path | None


def _random_models(unet_cfg: dict, vae_cfg: dict, init_seed: int):
    d = _diffusers()
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
    d = _diffusers()
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
        unet, vae = _random_models(unet_cfg, vae_cfg, init_seed)
        model_id = f"random:{name}:init_seed={int(init_seed)}"
        if name not in _BUNDLED:
            model_id = f"random:{source}:init_seed={int(init_seed)}"
        folder_out = None
    else:
        found = resolve(name, path=path, kind="diffusers", allow_download=allow_download)
        folder_out = found.path
        unet = _load_component(d.UNet2DConditionModel, folder_out, "unet", torch_dtype)
        vae = _load_component(d.AutoencoderKL, folder_out, "vae", torch_dtype)
        sc = folder_out / "scheduler" / "scheduler_config.json"
        sched_cfg = json.loads(sc.read_text()) if sc.is_file() else None
        model_id = found.weights_id
    unet = _cast(unet, torch_dtype).eval().requires_grad_(False)
    vae = _cast(vae, torch_dtype).eval().requires_grad_(False)
    if vae_encoder_only:
        vae = _encoder_only(vae)
    return SDModels(unet, vae, make_scheduler(sched_cfg), model_id, folder_out)


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
