"""The reference implementation's way of working, re-implemented with the same models.

Every pair extracts both images anew (no cache); SD runs as four overlapping tiles, each with a
VAE encode, the FULL UNet (hooks only capture; the forward runs through ``conv_out``) and a VAE
decode whose output is unused; fp32 throughout; DINOv2, co-PCA + fusion and matching as ours
(no padding mask). Not modelled: the reference's caption conditioning (ODISE's implicit
captioner); both sides use the zero conditioning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .timing import Stages


class ReferenceSD:
    """SD features as the reference computes them: 4 tiles, each VAE encode + FULL UNet
    (hooks capture the layers, nothing stops the forward pass) + an unused VAE decode, fp32."""

    def __init__(self, ours, unet, vae, tile: int, stages: Stages) -> None:
        from corr.extractors.sd import sd_layer_module

        self.ours = ours  # our SDExtractor: scheduler, timestep, seed, layers
        self.unet = unet
        self.vae = vae
        self.tile = tile
        self.stages = stages
        self.modules = {layer: sd_layer_module(unet, layer)[1] for layer in ours.layers}
        self.cond = torch.zeros(1, 77, unet.config.cross_attention_dim, device=ours.device)

    @torch.no_grad()
    def crop_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[int, torch.Tensor] = {}

        def hook_for(layer):
            def hook(_m, _i, out):
                captured[layer] = (
                    (out if isinstance(out, torch.Tensor) else out[0]).detach().float()
                )

            return hook

        handles = [m.register_forward_hook(hook_for(layer)) for layer, m in self.modules.items()]
        try:
            with self.stages.time("ref_vae_encode"):
                z0 = (
                    self.vae.encode(pixels * 2 - 1).latent_dist.mean
                    * self.vae.config.scaling_factor
                )
            eps = self.ours.noise(z0.shape[1:], self.ours.seed).to(z0.device)
            t = torch.tensor([self.ours.timestep], device=z0.device)
            z_t = self.ours.scheduler.add_noise(z0, eps, t)
            with self.stages.time("ref_unet_full"):
                self.unet(z_t, t, encoder_hidden_states=self.cond, return_dict=False)
            with self.stages.time("ref_vae_decode"):
                self.vae.decode(z0 / self.vae.config.scaling_factor, return_dict=False)  # unused
        finally:
            for h in handles:
                h.remove()
        return {f"sd{layer}": captured[layer] for layer in self.modules}

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        from corr.extractors.sd import stitch_tiles

        maps = stitch_tiles(pixels, self.tile, self.crop_features)
        return {name: m[0] for name, m in maps.items()}


def build_reference(bench) -> tuple[ReferenceSD, object]:
    """The reference's extra modules: a VAE with its decoder, and fp32 copies of the UNet and
    DINOv2 when ours are not fp32. Timed as ``ref_build``."""
    from corr._compat import ensure_torchvision_importable
    from corr.extractors import create_extractor
    from corr.extractors.sd import build_sd_models, load_config

    sd, dino, device = bench.sd, bench.dino, bench.device
    with bench.stages.time("ref_build"):
        if bench.dtype_short == "fp32":
            ensure_torchvision_importable()
            from diffusers import AutoencoderKL

            prefix = "sd_tiny" if bench.args.tiny else "sd15"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                vae = AutoencoderKL.from_config(load_config(f"{prefix}_vae"))
            unet = sd.unet
            ref_dino = dino
        else:
            models = build_sd_models(bench.names[0], pretrained=False, dtype=torch.float32)
            unet, vae = models.unet, models.vae
            ref_dino = create_extractor(
                bench.names[1],
                pretrained=False,
                dtype="fp32",
                input_size=bench.sizes["dino"],
                device=device,
            )
        vae = vae.to(device).eval().requires_grad_(False)
        unet = unet.to(device).eval()
    return ReferenceSD(sd, unet, vae, bench.sizes["tile"], bench.stages), ref_dino


def reference_pair(
    src: Path, tgt: Path, ref_sd, ref_dino, points: np.ndarray, stages: Stages, pca_dim: int
):
    """One pair the reference's way: both images extracted anew, co-PCA + fusion, matching."""
    from corr.fusion import build_descriptors
    from corr.geometry import Letterbox, grid_cells
    from corr.io import load_image
    from corr.matching import match_points

    maps = []
    for path in (src, tgt):
        arr = load_image(path)
        h, w = arr.shape[:2]
        per = []
        for ext, fn in ((ref_sd.ours, ref_sd), (ref_dino, ref_dino)):
            with stages.time("ref_letterbox"):
                boxed = Letterbox(w, h, ext.input_size).apply(arr, resample=ext.resample)
            px = torch.from_numpy(boxed).permute(2, 0, 1)[None].float().div(255.0).to(ext.device)
            if fn is ref_sd:
                with stages.time("ref_sd_total"):
                    per.append(ref_sd(px))
            else:
                with stages.time("ref_dino_forward"), torch.no_grad():
                    per.append({k: v[0] for k, v in ref_dino(px).items()})
        maps.append(per)
    frame = ref_dino.input_size
    grid = max(m.shape[-1] for m in maps[0][-1].values())
    with stages.time("ref_fusion"):
        ds, dt = build_descriptors(
            maps[0], maps[1], reduce=[True, False], weights=[0.5, 0.5], grid=grid, pca_dim=pca_dim
        )
    arr = load_image(src)
    lb = Letterbox(arr.shape[1], arr.shape[0], frame)
    cells = torch.from_numpy(grid_cells(lb.to_letterbox(points), frame, grid))
    with stages.time("ref_match_points"):
        match_points(ds, dt, cells, "softargmax", 5, 0.02, None)  # the reference masks no padding


def put_reference_stages(bench, n_pairs: int) -> None:
    """Per-image / per-pair figures of the reference's sub-stages over ``n_pairs`` pairs."""
    s, r, dev = bench.stages.samples, bench.report, bench.device.type
    ctx = bench.ctx_ref
    per_image = 2 * n_pairs
    r.put(
        "ref_build",
        s["ref_build"][0],
        "s once",
        "reference: extra modules (VAE with decoder; fp32 copies)",
        f"fp32, {dev}",
    )
    for key, what in (
        ("ref_vae_encode", "reference: VAE encode, 4 tiles"),
        ("ref_unet_full", "reference: FULL UNet (no early exit), 4 tiles"),
        ("ref_vae_decode", "reference: unused VAE decode, 4 tiles"),
    ):
        r.put(key, sum(s[key]) / per_image, "s/image", what, ctx)
    r.put(
        "ref_sd_total",
        _mean(s["ref_sd_total"]),
        "s/image",
        "reference: SD total",
        ctx,
        s["ref_sd_total"],
    )
    r.put(
        "ref_dino_forward",
        _mean(s["ref_dino_forward"]),
        "s/image",
        "reference: DINOv2 forward",
        f"DINO {bench.sizes['dino']} px, fp32, {dev}",
        s["ref_dino_forward"],
    )
    grid = bench.grid
    r.put(
        "ref_fusion",
        _mean(s["ref_fusion"]),
        "s/pair",
        "reference: co-PCA + fusion",
        f"grid {grid}x{grid}, {dev}",
    )
    r.put(
        "ref_match_points",
        _mean(s["ref_match_points"]),
        "s/pair",
        f"reference: matching of {bench.args.points} points",
        f"grid {grid}x{grid}, {dev}",
    )


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")
