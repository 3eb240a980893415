"""One pair through :class:`corr.Matcher` with a cold feature cache, stage by stage.

The stages are timed by wrappers placed, for the duration of the pair only, around the
extractor's own parts (``SDExtractor.encode`` / ``unet_features`` / ``extract``,
``DinoExtractor.extract``, ``Letterbox.apply``, ``Matcher.descriptors_many``, ``match_points``,
``dense_match``); per-image stages are the mean over the pair's two images.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .timing import progress


def run_single_pair(bench) -> None:
    import corr
    import corr.dense
    import corr.pair
    from corr.geometry import Letterbox

    stages, sd, dino = bench.stages, bench.sd, bench.dino
    a, b = bench.pairs[0]
    src, tgt = bench.images[a], bench.images[b]
    progress(f"one pair, cold cache, stage by stage: {src.name} -> {tgt.name}")
    matcher = corr.Matcher(
        [sd, dino], fuse=0.5, pca_dim=bench.args.pca_dim, device=bench.device, memory_cache=8
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(stages.wrap(Letterbox, "apply", "letterbox"))
        stack.enter_context(stages.wrap(sd, "encode", "vae_encode"))
        stack.enter_context(stages.wrap(sd, "unet_features", "unet"))
        stack.enter_context(stages.wrap(sd, "extract", "sd_total"))
        stack.enter_context(stages.wrap(dino, "extract", "dino_forward"))
        stack.enter_context(stages.wrap(matcher, "descriptors_many", "fusion"))
        stack.enter_context(stages.wrap(corr.pair, "match_points", "match_points"))
        stack.enter_context(stages.wrap(corr.dense, "dense_match", "match_dense"))
        with stages.time("single_pair"):
            matcher.match(src, tgt, bench.queries[a])
        with stages.time("dense_pair"):
            dense = matcher.dense(src, tgt)
    bench.grid = grid = dense["confidence"].shape[0]
    put_figures(bench, grid)


def put_figures(bench, grid: int) -> None:
    s, r, dev, dt = bench.stages.samples, bench.report, bench.device.type, bench.precision
    # each image is letterboxed once per extractor: 2 samples per image
    lb = [x + y for x, y in zip(s["letterbox"][0::2], s["letterbox"][1::2], strict=False)]
    g = f"grid {grid}x{grid}, {dev}"
    rows = [
        ("build_sd", s["build_sd"][0], "s once", f"build {bench.names[0]} (UNet + VAE encoder)",
         f"{dt}, {dev}", None),
        ("build_dino", s["build_dino"][0], "s once", f"build {bench.names[1]}", f"{dt}, {dev}",
         None),
        ("letterbox", _mean(lb), "s/image", "letterbox for SD and DINO (resize + pad)",
         bench.ctx_pair, lb),
        ("vae_encode", _mean(s["vae_encode"]), "s/image", "VAE encode (posterior mean)",
         bench.ctx_sd, s["vae_encode"]),
        ("unet", _mean(s["unet"]), "s/image", "UNet up to the last hooked layer (early exit)",
         bench.ctx_sd, s["unet"]),
        ("sd_total", _mean(s["sd_total"]), "s/image", "SD extractor total (encode + noise + UNet)",
         bench.ctx_sd, s["sd_total"]),
        ("dino_forward", _mean(s["dino_forward"]), "s/image", "DINOv2 forward (last block tokens)",
         bench.ctx_dino, s["dino_forward"]),
        ("fusion", _mean(s["fusion"]), "s/pair",
         f"co-PCA ({bench.args.pca_dim}/layer, fp32) + L2 fusion of a pair", g, s["fusion"]),
        ("match_points", _mean(s["match_points"]), "s/pair",
         f"soft-argmax matching of {bench.args.points} points", g, s["match_points"]),
        ("match_dense", _mean(s["match_dense"]), "s/pair",
         f"dense matching of all {grid * grid} cells", g, s["match_dense"]),
        ("single_pair", s["single_pair"][0], "s/pair",
         f"one pair end to end, cold cache ({bench.args.points} points)", bench.ctx_pair, None),
        ("dense_pair", s["dense_pair"][0], "s/pair",
         "dense flow of the same pair, features cached", bench.ctx_pair, None),
    ]  # fmt: skip
    for key, value, unit, what, ctx, samples in rows:
        r.put(key, value, unit, what, ctx, samples)


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")
