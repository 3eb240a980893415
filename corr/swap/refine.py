"""The swap's diffusion refinement: DDIM inversion of the initial swap, then DDIM sampling
that re-injects the decoder features recorded along the inversion.

:class:`Refiner` holds the Stable Diffusion models the SD extractor uses (the same weights,
built by :func:`corr.extractors.sd.build_sd_models`, whose missing weights raise the
actionable :class:`~corr.WeightsNotFoundError`; never random weights in their place), with
diffusers' ``DDIMScheduler`` and ``DDIMInverseScheduler`` on SD's betas (scaled-linear
0.00085 -> 0.012, ``set_alpha_to_one=False``, ``steps_offset=1``, no clipping: the schedulers
of SD 1.5's ``scheduler_config.json``). No pipeline is copied: the loop below is the
standard DDIM one (``for t in timesteps: eps = unet(z, t, cond); z = scheduler.step(eps, t,
z)``), with the inverse scheduler's ascending timesteps for the inversion.

Injection (:mod:`corr.swap.injection`): along the inversion the output of decoder layers
``inject_layers`` (default ``(4,)``: in SD 1.5 ``up_blocks.1.attentions.0``, 1280 channels at
1/32 of the image side; layer numbers as :mod:`corr.extractors.sd_layers`) is recorded at
every timestep; in the first ``round(inject_fraction * n)`` of the ``n`` sampling steps (default 0.8,
the noisiest ones, as Plug-and-Play's feature injection) it replaces the layer's output at
the same timestep, which keeps the initial swap's layout while the later steps repair its
seams. Inversion and sampling use the same prompt and no classifier-free guidance (guidance
breaks DDIM inversion). ``strength`` < 1 inverts and samples only the less noisy part of the
timesteps; ``inversion_iterations`` > 0 makes each inversion step a fixed point, against the
inversion's artifacts (one of the paper's stated failure cases).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..extractors.conditioning import encode_prompt, load_text_encoder, zero_conditioning
from ..extractors.sd_layers import as_tensor, decoder_taps, vae_downsampling
from ..extractors.sd_models import SDModels, build_sd_models, import_diffusers
from .injection import FeatureInjector, HookEvent


def ddim_config(scheduler: Any) -> dict[str, Any]:
    """The DDIM schedulers' config: the betas of ``scheduler`` (the SD model's), SD's
    ``set_alpha_to_one=False``, ``steps_offset=1``, ``clip_sample=False``."""
    cfg = {
        k: scheduler.config[k]
        for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        if scheduler.config.get(k) is not None
    }
    cfg.update(set_alpha_to_one=False, steps_offset=1, clip_sample=False, prediction_type="epsilon")
    return cfg


class Refiner:
    """The diffusion refinement of :func:`corr.swap.swap` on one SD model.

    Args:
        models: what :func:`~corr.extractors.sd.build_sd_models` returns (with the VAE's
            decoder: ``vae_encoder_only=False``).
        text: condition on the prompt through the model folder's CLIP text encoder (loaded
            on first use; ``transformers`` needed), or through ``tokenizer`` and
            ``text_encoder`` when given (as the SD extractor takes them); ``False``: on zeros,
            as the SD extractor's ``prompt=""`` (random test models have no text encoder).
        inject_layers: decoder layers whose outputs are injected (see the module's text).
        inject_fraction: the share of the sampling steps, from the first, that inject.
        strength: the share of the ``steps`` timesteps inverted and sampled (1: all the way
            to SD's noisiest timestep, as the paper; less keeps more of the initial swap).
        inversion_iterations: fixed-point refinements of each inversion step (0: plain DDIM
            inversion, the paper's; a few make the round trip exact where the UNet is
            smooth enough, against the inversion's artifacts; each costs one UNet call).
        size: the longest side of the working image (its sides are rounded to a multiple of
            the VAE x UNet stride, 64 for SD); the result is resized back to the image's size.
        keep_background: outside the swap mask (dilated by one latent cell) the result keeps
            the initial swap's pixels, so the inversion's artifacts stay on the instance.
        eta: DDIM's eta of the sampling (0: deterministic; above 0 the noise is seeded).
        device: where the models run.
    """

    def __init__(
        self,
        models: SDModels,
        *,
        text: bool = True,
        inject_layers: tuple[int, ...] = (4,),
        inject_fraction: float = 0.8,
        strength: float = 1.0,
        inversion_iterations: int = 0,
        size: int = 512,
        keep_background: bool = True,
        eta: float = 0.0,
        device: str | torch.device | None = None,
        tokenizer: Any = None,
        text_encoder: nn.Module | None = None,
    ) -> None:
        if isinstance(models.vae.decoder, nn.Identity):
            raise ValueError("the refinement decodes latents: build the VAE with its decoder")
        if not 0.0 <= float(inject_fraction) <= 1.0:
            raise ValueError(f"inject_fraction must be in [0, 1], got {inject_fraction}")
        n_layers = len(decoder_taps(models.unet))
        for layer in inject_layers:
            if not 0 <= int(layer) < n_layers:
                raise ValueError(f"inject_layers: SD layer {layer} out of range 0..{n_layers - 1}")
        if not 0.0 < float(strength) <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if int(inversion_iterations) < 0:
            raise ValueError(f"inversion_iterations must be >= 0, got {inversion_iterations}")
        self.models = models
        self.strength = float(strength)
        self.inversion_iterations = int(inversion_iterations)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.unet = models.unet.to(self.device)
        self.vae = models.vae.to(self.device)
        self.text = bool(text)
        self.inject_layers = tuple(int(x) for x in inject_layers)
        self.inject_fraction = float(inject_fraction)
        self.size = int(size)
        self.keep_background = bool(keep_background)
        self.eta = float(eta)
        d = import_diffusers()
        cfg = ddim_config(models.scheduler)
        self.scheduler = d.DDIMScheduler(**cfg)
        self.inverse_scheduler = d.DDIMInverseScheduler(**cfg)
        self.stride = vae_downsampling(self.vae) * 2 ** max(
            t.level for t in decoder_taps(self.unet)
        )
        self.events: list[HookEvent] = []
        self._text: tuple[Any, nn.Module] | None = None
        if (tokenizer is None) != (text_encoder is None):
            raise ValueError("give both tokenizer and text_encoder, or neither")
        if text_encoder is not None:
            self._text = (tokenizer, text_encoder.to(self.device))

    @classmethod
    def from_weights(
        cls,
        name: str = "sd15",
        *,
        path: str | Path | None = None,
        dtype: str | torch.dtype = "fp32",
        device: str | torch.device | None = None,
        **options: Any,
    ) -> Refiner:
        """A refiner on the real weights ``name`` (``path``: a local diffusers folder), found as
        the SD extractor finds them; missing ones raise :class:`~corr.WeightsNotFoundError`."""
        return cls(build_sd_models(name, True, dtype, path=path), device=device, **options)

    def config(self) -> dict[str, Any]:
        """The refinement's settings (JSON-ready)."""
        return {
            "model": self.models.model_id,
            "scheduler": "DDIMScheduler / DDIMInverseScheduler",
            "conditioning": "prompt (CLIP text encoder)" if self.text else "zeros (no text)",
            "inject_layers": list(self.inject_layers),
            "inject_fraction": self.inject_fraction,
            "strength": self.strength,
            "inversion_iterations": self.inversion_iterations,
            "size": self.size,
            "keep_background": self.keep_background,
            "eta": self.eta,
        }

    # ---- the pieces --------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @torch.no_grad()
    def conditioning(self, prompt: str) -> torch.Tensor:
        """``(1, 77, D)`` encoder hidden states of ``prompt`` (zeros with ``text=False``)."""
        if not self.text:
            return zero_conditioning(self.unet, self.device, self.dtype)
        if self._text is None:
            self._text = load_text_encoder(self.models.folder, prompt, self.device)
        return encode_prompt(prompt, *self._text).to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(1, 3, h, w)`` pixels in ``[0, 1]`` -> the scaled VAE posterior mean, float32."""
        dist = self.vae.encode((pixels * 2 - 1).to(self.device, self.dtype)).latent_dist
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0  # as the SD extractor
        return (dist.mean.float() - shift) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> ``(1, 3, h, w)`` pixels in ``[0, 1]``, float32."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        z = latent / self.vae.config.scaling_factor + shift
        x = self.vae.decode(z.to(self.dtype)).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    def _eps(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return as_tensor(self.unet(z.to(self.dtype), t, encoder_hidden_states=cond)).float()

    def run_steps(self, steps: int) -> int:
        """How many of ``steps`` DDIM steps the inversion and the sampling run:
        ``round(strength * steps)``, at least 1."""
        return max(1, round(self.strength * int(steps)))

    @torch.no_grad()
    def invert(
        self,
        z0: torch.Tensor,
        cond: torch.Tensor,
        steps: int,
        injector: FeatureInjector | None = None,
        bar: Any = None,
    ) -> torch.Tensor:
        """DDIM inversion of the clean latent ``z0`` (``(1, 4, h, w)``, scaled) through the
        first :meth:`run_steps` of ``steps`` timesteps -> the noisy latent; ``injector``
        records its layers at every step (at the last UNet call of the step).

        Each step is diffusers' ``DDIMInverseScheduler.step`` with the noise predicted at the
        step's start; with :attr:`inversion_iterations` ``= k > 0`` the step's end ``z_t`` is
        then refined ``k`` times as the fixed point ``z_t = step(eps(z_t, t), t, z_s)``, so
        that the sampling step from ``z_t`` (which predicts the noise at ``z_t``) lands back on
        ``z_s`` (fixed-point DDIM inversion, as in AIDI, Pan et al. 2023, and ReNoise, Garibi
        et al. 2024).
        """
        sched = self.inverse_scheduler
        sched.set_timesteps(int(steps), device=self.device)
        z = z0.float()
        for i, t in enumerate(sched.timesteps[: self.run_steps(steps)]):
            if injector is not None:
                injector.at(i, int(t), "record")
            z_next = sched.step(self._eps(z, t, cond), t, z).prev_sample
            for _ in range(self.inversion_iterations):
                z_next = sched.step(self._eps(z_next, t, cond), t, z).prev_sample
            z = z_next
            if bar is not None:
                bar.update(1)
        return z

    @torch.no_grad()
    def sample(
        self,
        z_t: torch.Tensor,
        cond: torch.Tensor,
        steps: int,
        injector: FeatureInjector | None = None,
        inject_steps: int = 0,
        generator: torch.Generator | None = None,
        bar: Any = None,
    ) -> torch.Tensor:
        """DDIM sampling (diffusers' ``DDIMScheduler.step``) from ``z_t`` through the last
        :meth:`run_steps` of ``steps`` timesteps (those the inversion went through) -> the
        clean latent; ``injector`` injects its recorded features in the first
        ``inject_steps`` of them."""
        sched = self.scheduler
        sched.set_timesteps(int(steps), device=self.device)
        z = z_t.float()
        for i, t in enumerate(sched.timesteps[int(steps) - self.run_steps(steps) :]):
            if injector is not None:
                injector.at(i, int(t), "inject" if i < inject_steps else None)
            eps = self._eps(z, t, cond)
            z = sched.step(eps, t, z, eta=self.eta, generator=generator).prev_sample
            if bar is not None:
                bar.update(1)
        return z

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """``(w, h)`` of the working image: longest side about :attr:`size`, both sides
        multiples of :attr:`stride`."""
        s = self.size / max(width, height)
        m = self.stride
        return max(m, round(width * s / m) * m), max(m, round(height * s / m) * m)

    # ---- the refinement ----------------------------------------------------------------------

    def refine(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        prompt: str,
        steps: int = 50,
        seed: int = 0,
        progress: bool = True,
    ) -> np.ndarray:
        """Refine ``image`` (``(H, W, 3)`` uint8, the initial swap) whose swapped pixels are
        ``mask`` (``(H, W)`` bool); returns ``(H, W, 3)`` uint8 in the same frame. The hook
        firings are kept in :attr:`events`."""
        from tqdm import tqdm

        h, w = image.shape[:2]
        if mask.shape != (h, w):
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the image {w}x{h}")
        if int(steps) < 1:
            raise ValueError(f"steps must be a positive number of DDIM steps, got {steps}")
        ww, hh = self.working_size(w, h)
        small = Image.fromarray(image).resize((ww, hh), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)[None].float() / 255
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        cond = self.conditioning(prompt)
        inject_steps = round(self.inject_fraction * self.run_steps(steps))
        bar = tqdm(
            total=2 * self.run_steps(steps), desc="swap refinement (DDIM)", disable=not progress
        )
        try:
            with FeatureInjector(self.unet, self.inject_layers) as injector:
                z0 = self.encode(pixels)
                z_t = self.invert(z0, cond, int(steps), injector, bar)
                z = self.sample(z_t, cond, int(steps), injector, inject_steps, generator, bar)
        finally:
            bar.close()
        self.events = injector.events
        out = self.decode(z)[0].permute(1, 2, 0).cpu().numpy()
        out = Image.fromarray((out * 255).round().astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC
        )
        refined = np.asarray(out).copy()
        if self.keep_background:
            r = math.ceil(vae_downsampling(self.vae) * max(w / ww, h / hh))
            m = torch.from_numpy(mask.astype(np.float32))[None, None]
            grown = F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)[0, 0].numpy() > 0
            refined = np.where(grown[..., None], refined, image)
        return refined
