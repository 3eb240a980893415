"""benchmarks/backbone_flops.py counts what a ViT costs by the formula, on the meta device."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "backbone_flops.py"


def _module():
    spec = importlib.util.spec_from_file_location("backbone_flops", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_vit_flops_match_the_formula():
    mod = _module()
    res = mod.count("dinov3-tiny", {"input_size": 160, "embed_dim": 48, "depth": 2})
    assert res["maps"] == {"dino": [48, 10, 10]}
    n, d, patches = 105, 48, 100  # tokens (class + 4 registers + 10 x 10), width
    per_block = 2 * n * d * (3 * d + d + 2 * 4 * d) + 2 * 2 * n * n * d  # linears + attention
    patch_embed = 2 * patches * d * 3 * 16 * 16
    assert res["flops"] == 2 * per_block + patch_embed


def test_sd_rows_count_only_what_runs():
    mod = _module()
    full = mod.count("sd-tiny-cleandift", {"input_size": 128, "layers": (2, 5, 8)})
    early = mod.count("sd-tiny-cleandift", {"input_size": 128, "layers": (2,)})
    assert early["maps"] == {"sd2": [48, 2, 2]}
    assert 0 < early["flops"] < full["flops"]  # the UNet stops after the last hooked layer
