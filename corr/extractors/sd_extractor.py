"""The Stable Diffusion UNet feature extractor: :class:`SDExtractor` (docs/protocol.md §2).

One extraction: pixels in [0, 1] -> [-1, 1] -> VAE posterior **mean** x ``scaling_factor``
(``latent="sample"``: a seeded posterior sample per draw, as DIFT) ->
``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps`` (DDPM ``add_noise``, scaled-linear betas
0.00085 -> 0.012 over 1000 steps unless the model folder's scheduler config says otherwise)
-> one UNet pass at timestep ``t`` with forward hooks on the decoder modules. The UNet is
stopped right after the last hooked module (a private exception raised from its hook), so the
later up blocks and ``conv_out`` never run. ``tiled=True`` runs four crops through VAE + UNet
and stitches their maps (:func:`stitch_tiles`).

Feature ``"sd{L}"`` is the input of decoder layer L (the output of layer L-1); the layer map is
:mod:`corr.extractors.sd_layers` (SD 1.5 at 960 px: sd2 1280 x 15 x 15, sd5 1280 x 30 x 30,
sd8 640 x 60 x 60, sd11 320 x 120 x 120).

Noise: ``eps`` for seed ``s`` is drawn once from a CPU ``torch.Generator`` seeded with ``s`` at
the latent's shape (batch 1) and reused for every image of the batch, as the reference reuses
one fixed ``eps``; ``ensemble=n`` averages the features of seeds ``s, s+1, ..., s+n-1``.
``clean=True`` (CleanDIFT, :mod:`corr.extractors.cleandift`) adds no noise: the UNet gets
``z_0`` itself, conditioned on timestep ``t``.

Conditioning: ``prompt=""`` (default) conditions on a zero tensor and loads no text encoder;
a non-empty prompt is encoded with the model's CLIP text encoder
(:mod:`corr.extractors.conditioning`). FreeU: :mod:`corr.extractors.freeu`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Extractor, FeatureMaps, module_fingerprint
from .conditioning import encode_prompt, fill_prompt, load_text_encoder, zero_conditioning
from .freeu import (
    FREEU_GEOAWARE,
    FREEU_KEYS,
    freeu_applied,
    freeu_stages,
    geoaware_freeu_channels,
    parse_freeu,
    scale_backbone_inplace,
)
from .sd_layers import as_tensor, decoder_taps, vae_downsampling
from .sd_models import cast_module, dtype_name, make_scheduler, parse_dtype

logger = logging.getLogger(__name__)


class _StopUNet(Exception):
    """Raised from the last hook to stop the UNet early."""


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
        layers: decoder layer numbers (0..number of decoder layers; see
            :mod:`corr.extractors.sd_layers`),
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
            :func:`~corr.extractors.freeu.freeu_stages`). FreeU attributes already set on the UNet are suspended
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
        clean: no noise: the UNet reads the latent ``z_0`` as it is, with timestep ``t`` only
            as its conditioning (CleanDIFT's extraction; its UNet was trained for this).
        weights_record: where the weights came from when that is not the official repository
            (the files' SHA-256; :meth:`corr.weights.ResolvedWeights.record`), for
            :meth:`config`.
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
        clean: bool = False,
        weights_record: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        dtype = parse_dtype(dtype)
        self.unet = cast_module(unet, dtype).eval().requires_grad_(False)
        self.vae = cast_module(vae, dtype).eval().requires_grad_(False)
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
        self.clean = bool(clean)
        if self.clean and self.ensemble > 1 and latent == "mean":
            raise ValueError(
                "clean features add no noise, so an ensemble of posterior means repeats one "
                "pass: use ensemble=1, or latent='sample' to average posterior samples"
            )
        self.weights_record = weights_record
        self.seed = int(seed)
        self.prompt = str(prompt)
        self.tiled = bool(tiled)
        self.tile_size = int(tile_size)
        self.freeu = parse_freeu(freeu)
        self.freeu_params = dict(FREEU_GEOAWARE if freeu_params is None else freeu_params)
        if self.freeu is not None:
            missing = [k for k in FREEU_KEYS if k not in self.freeu_params]
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
        if self.clean:
            cfg["clean"] = True
        if self.weights_record is not None:
            cfg["weights"] = self.weights_record
        if self.tiled:
            cfg["tile_size"] = self.tile_size
        if self.freeu:
            cfg["freeu_params"] = dict(sorted(self.freeu_params.items()))
            cfg["freeu_inplace"] = self.freeu_inplace
        if self.freeu == "geoaware":
            cfg["freeu_channels"] = list(geoaware_freeu_channels(self.unet))
        return cfg

    # ---- conditioning ------------------------------------------------------------------------

    def prompt_text(self, category: str | None) -> str:
        """The prompt with ``{category}`` filled in (required when the prompt has it)."""
        return fill_prompt(self.prompt, category)

    def _load_text_encoder(self) -> None:
        self.tokenizer, self.text_encoder = load_text_encoder(
            self.text_source, self.prompt, self.device
        )

    @torch.no_grad()
    def conditioning(self, category: str | None = None) -> torch.Tensor:
        """The ``(1, 77, cross_attention_dim)`` encoder hidden states for ``category``."""
        if self.prompt == "":
            return zero_conditioning(self.unet, self.device, self.dtype)
        text = self.prompt_text(category)
        if text not in self._prompt_cache:
            if self.text_encoder is None or self.tokenizer is None:
                self._load_text_encoder()
            self._prompt_cache[text] = encode_prompt(text, self.tokenizer, self.text_encoder)
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
                captured[layer] = as_tensor(output).detach().clone()
                if layer == last:
                    raise _StopUNet

            return hook

        handles = [
            self._taps[layer].module.register_forward_hook(make_hook(layer))
            for layer in self.layers
        ]
        try:
            # only this extractor's `freeu` applies: FreeU set on the UNet is suspended
            with freeu_applied(self.unet, self.freeu, self.freeu_params, self._freeu_stages):
                t = torch.full((z_t.shape[0],), self.timestep, device=z_t.device, dtype=torch.long)
                enc = cond.expand(z_t.shape[0], -1, -1)
                try:
                    self.unet(z_t, t, encoder_hidden_states=enc, return_dict=False)
                except _StopUNet:
                    pass
        finally:
            for h in handles:
                h.remove()
        missing = [layer for layer in self.layers if layer not in captured]
        if missing:
            raise RuntimeError(f"SD layers {missing} were not reached by the UNet forward pass")
        if self.freeu is not None and self.freeu_inplace:
            # the backbone scaling of each FreeU layer's input, in place (as FreeU does to h)
            scale_backbone_inplace(captured, self._freeu_stages, self.freeu_params)
        return {f"sd{layer}": captured[layer].float() for layer in self.layers}

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
            if self.clean:  # CleanDIFT: the clean latent, t only conditions the UNet
                z_t = z0
            else:
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
