"""CleanDIFT's extraction (golden/cleandift_features.json): our clean-mode SD extractor on the
tiny fixed UNet/VAE gives the numbers CleanDIFT's own ``get_features`` gave, and the tempting
wrong variants (our noisy q_sample, another timestep, the posterior mean, another draw) do not."""

from __future__ import annotations

import pytest
import torch
from cleandift_tiny import NOISE_SEED, tiny_inputs, tiny_models

from corr.extractors.sd import SDExtractor


@pytest.fixture(scope="module")
def models():
    return tiny_models()


def _features(models, **overrides):
    unet, vae = models
    pixels, cond = tiny_inputs()
    opts = dict(timestep=261, clean=True, latent="sample", seed=NOISE_SEED, input_size=64)
    opts.update(overrides)
    ext = SDExtractor(unet, vae, layers=(0, 2, 5, 6, 8), **opts)
    return ext.features(pixels, cond)


def _max_error(golden, feats) -> float:
    data = golden("cleandift_features.json")
    worst = 0.0
    for key, layer in data["layers"].items():
        ref = torch.tensor(data["features"][key]["values"]).reshape(data["features"][key]["shape"])
        got = feats[f"sd{layer}"]
        assert tuple(got.shape) == tuple(ref.shape), key
        worst = max(worst, float((got - ref).abs().max() / ref.abs().max()))
    return worst


def test_clean_extraction_matches_cleandift(golden, models):
    assert _max_error(golden, _features(models)) < 2e-5


@pytest.mark.parametrize(
    "wrong",
    [
        {"clean": False},  # our noisy extraction: q_sample(z_0, eps, 261)
        {"timestep": 260},
        {"timestep": 0},
        {"latent": "mean"},  # the GeoAware branch's deterministic latent, not get_features'
        {"seed": NOISE_SEED + 1},  # another posterior sample
    ],
)
def test_wrong_extractions_fail_the_golden(golden, models, wrong):
    assert _max_error(golden, _features(models, **wrong)) > 1e-3
