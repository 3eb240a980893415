"""The swap's diffusion refinement on the tiny random SD: the DDIM round trip, the injection
hooks (where and when they fire, and that they are gone afterwards), the refined image's frame,
and missing real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import corr
from corr import WeightsNotFoundError
from corr.extractors.sd import build_sd_models, decoder_taps
from corr.swap.injection import FeatureInjector
from corr.swap.refine import Refiner

STEPS = 10


@pytest.fixture(scope="module")
def models():
    return build_sd_models("sd-tiny", pretrained=False, init_seed=0)


def _latent(seed: int = 0) -> torch.Tensor:
    """A smooth latent of SD's scale (SD's scaled latents have about unit variance; the tiny
    random VAE's do not, so the round trip is run on this one)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.interpolate(torch.randn(1, 4, 6, 8, generator=g), size=(12, 16))
    return (z - z.mean()) / z.std()


def _hooks(unet: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in unet.modules())


def test_inversion_then_sampling_reconstructs_the_latent(models):
    """Tolerance: the latent comes back within 1e-4 (max abs, on a unit-variance latent) with
    the fixed-point inversion (6 iterations a step), over half of 10 DDIM steps (timesteps 1 ..
    401). Measured: 9e-6; plain DDIM inversion: 0.23, sampling one step off the inversion:
    0.67. Over the full range the tiny random UNet, which does not predict noise, shrinks the
    latent to a scale where it is too rough for any inversion to hold; a trained one does not."""
    z0 = _latent()
    exact = Refiner(models, text=False, strength=0.5, inversion_iterations=6)
    cond = exact.conditioning("unused")
    z_t = exact.invert(z0, cond, STEPS)
    assert exact.run_steps(STEPS) == 5 and (z_t - z0).abs().max() > 0.1  # it did move
    back = exact.sample(z_t, cond, STEPS)
    assert (back - z0).abs().max() < 1e-4
    plain = Refiner(models, text=False, strength=0.5)  # the paper's plain DDIM inversion
    err_plain = (plain.sample(plain.invert(z0, cond, STEPS), cond, STEPS) - z0).abs().max()
    assert 1e-2 < err_plain < 1.0
    # the round trip holds only when the sampling walks back the inversion's timesteps
    off = Refiner(models, text=False, strength=0.6)  # six steps back after five up
    assert (off.sample(z_t, cond, STEPS) - z0).abs().max() > 0.1


def test_injection_hooks_fire_at_the_documented_layers_and_steps_and_are_removed(models):
    refiner = Refiner(models, text=False, inject_layers=(4, 8), inject_fraction=0.6, size=128)
    unet = refiner.unet
    before = _hooks(unet)
    image = np.random.default_rng(0).integers(0, 256, (72, 100, 3), dtype=np.uint8)
    mask = np.zeros((72, 100), bool)
    mask[20:50, 30:70] = True
    out = refiner.refine(image, mask, "A high quality image of cat", steps=STEPS, progress=False)
    assert _hooks(unet) == before  # every hook removed
    taps = decoder_taps(unet)
    inversion_t = list(range(1, 1000, 100))  # DDIMInverseScheduler, 10 steps, steps_offset 1
    rec = [(e.layer, e.path, e.step, e.timestep) for e in refiner.events if e.action == "record"]
    assert rec == [(L, taps[L].path, i, t) for i, t in enumerate(inversion_t) for L in (4, 8)]
    inj = [(e.layer, e.step, e.timestep) for e in refiner.events if e.action == "inject"]
    sampling_t = inversion_t[::-1]
    assert inj == [(L, i, sampling_t[i]) for i in range(6) for L in (4, 8)]  # 0.6 x 10 steps
    assert {e.path for e in refiner.events} == {
        "up_blocks.1.attentions.0",
        "up_blocks.2.attentions.1",
    }
    # the refined image: the target's frame and size; the background kept outside the mask
    # grown by one latent cell (8 px at the 128 x 64 working size: ceil(8 * 72 / 64) = 9 px)
    assert refiner.working_size(100, 72) == (128, 64)
    assert out.shape == image.shape and out.dtype == np.uint8
    far = np.ones((72, 100), bool)
    far[20 - 9 : 50 + 9, 30 - 9 : 70 + 9] = False
    np.testing.assert_array_equal(out[far], image[far])
    assert (out[mask] != image[mask]).any()
    # the injection changes the sampling: without it the result differs
    same = Refiner(models, text=False, inject_layers=(4, 8), inject_fraction=0.6, size=128)
    none = Refiner(models, text=False, inject_layers=(4, 8), inject_fraction=0.0, size=128)
    kw = {"steps": STEPS, "progress": False}
    np.testing.assert_array_equal(same.refine(image, mask, "x", **kw), out)  # deterministic
    assert (none.refine(image, mask, "x", **kw) != out).any()
    assert not [e for e in none.events if e.action == "inject"]


def test_hooks_are_removed_after_an_error(models):
    unet = models.unet
    before = _hooks(unet)
    injector = FeatureInjector(unet, (4,))
    with pytest.raises(RuntimeError, match="no feature of decoder layer 4 was recorded"):
        with injector:
            injector.at(0, 981, "inject")  # nothing recorded: refused
            unet(torch.zeros(1, 4, 8, 8), 981, encoder_hidden_states=torch.zeros(1, 77, 32))
    assert _hooks(unet) == before


class FakeTokenizer:
    """Stands in for CLIP's tokenizer: one id from the text's length (as
    tests/extractors/test_sd_extractor.py)."""

    model_max_length = 77

    def __init__(self):
        self.seen = []

    def __call__(self, text, **kw):
        self.seen.append(text)
        ids = torch.tensor([[len(text) % 50] + [0] * 76])
        return type("Tokens", (), {"input_ids": ids})()


class FakeEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 32)  # the tiny UNet's cross-attention width

    def forward(self, ids):
        return (self.emb(ids),)


def test_swap_refines_in_the_target_frame_with_a_bar(models, capsys):
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tgt = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    matcher = corr.Matcher(["sd-tiny"], pretrained=False, device="cpu",
                           extractor_options={"sd-tiny": {"input_size": 64}})  # fmt: skip
    tokenizer, encoder = FakeTokenizer(), FakeEncoder()
    refiner = Refiner(models, size=64, tokenizer=tokenizer, text_encoder=encoder)
    out = corr.swap(src, tgt, "cat", mask_src=(8, 8, 56, 56), mask_tgt=(16, 8, 64, 40),
                    matcher=matcher, refiner=refiner, steps=4, seed=3)  # fmt: skip
    assert out.refined.shape == tgt.shape and out.refined.dtype == np.uint8
    assert out.config["prompt"] == "A high quality image of cat"
    assert tokenizer.seen == ["A high quality image of cat"]  # the paper's prompt conditions
    assert out.config["refiner"]["conditioning"] == "prompt (CLIP text encoder)"
    assert out.config["steps"] == 4 and out.config["refiner"]["inject_layers"] == [4]
    assert "swap refinement (DDIM)" in capsys.readouterr().err  # the tqdm bar


def test_missing_sd_weights_raise_the_actionable_error(tmp_path, monkeypatch, models):
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="corr.weights download sd15"):
        Refiner.from_weights("sd15")
    src = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    matcher = corr.Matcher(["sd-tiny"], pretrained=False, device="cpu",
                           extractor_options={"sd-tiny": {"input_size": 64}})  # fmt: skip
    with pytest.raises(WeightsNotFoundError):  # never random weights in their place
        corr.swap(src, src, "cat", mask_src=(8, 8, 56, 56), mask_tgt=(8, 8, 56, 56),
                  matcher=matcher)  # fmt: skip
    with pytest.raises(ValueError, match="decodes latents"):
        Refiner(build_sd_models("sd-tiny", pretrained=False, vae_encoder_only=True))
