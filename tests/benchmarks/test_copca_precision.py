"""float32 co-PCA keeps the nearest neighbours of float64 on real features (benchmarks/copca_precision.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("real_mobilenet")  # every test here uses it
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "copca_precision.py"


def _module():
    spec = importlib.util.spec_from_file_location("copca_precision", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_float32_copca_keeps_the_float64_matches():
    mod = _module()
    images = mod.minireal_images(4)  # the demo photos first (a public clone has them too)
    res = mod.agreement(images, n_pairs=3, dim=64)
    o = res["overall"]
    assert o["cells"] == min(3, len(images) * (len(images) - 1) // 2) * 56 * 56
    assert o["share"] >= 0.999, o  # measured 99.995% over 12 pairs
    assert o["max_sim_diff"] < 1e-3  # the rare changes are near-ties
