"""Helpers of the CUDA tests: the bundled photos, features read back from a matcher's cache,
and the relative error used for every tolerance."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
JPEGS = REPO / "tests" / "data" / "minireal" / "SPair-71k" / "JPEGImages"


def photos(n: int) -> list[str]:
    """``n`` real photos of the bundled minireal subset (no mirrored copies), in a fixed order."""
    files = sorted(str(p) for p in JPEGS.glob("*/*.jpg") if not p.stem.endswith("_flip"))
    assert len(files) >= n, f"only {len(files)} photos in {JPEGS}"
    return files[:n]


def cached_maps(matcher, paths: list[str]) -> list[list[dict[str, torch.Tensor]]]:
    """Every image's maps (one dict per extractor), as the matcher's cache holds them (fp16,
    here as float32 on the CPU); the images must have been extracted."""
    misses = matcher.cache.misses
    out = [
        [{k: v.float().cpu() for k, v in maps.items()} for maps in matcher.features(p).maps]
        for p in paths
    ]
    assert matcher.cache.misses == misses, "features were computed again instead of read"
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64 (``b`` is the reference)."""
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def map_errors(got, want) -> dict[str, float]:
    """Relative error of every map of every image: ``{"image i / extractor e / name": err}``."""
    errs = {}
    for i, (g_img, w_img) in enumerate(zip(got, want, strict=True)):
        for e, (g, w) in enumerate(zip(g_img, w_img, strict=True)):
            assert g.keys() == w.keys()
            for k in w:
                assert g[k].shape == w[k].shape, (i, e, k)
                errs[f"image {i} / extractor {e} / {k}"] = rel_err(g[k], w[k])
    return errs
