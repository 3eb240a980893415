"""CleanDIFT: clean-latent extraction (no noise, t only conditions the UNet), its weights (the
SD base folder + CleanDIFT's UNet file), and its knobs under each protocol."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import corr
from corr import weights as W
from corr.extractors import create_extractor
from corr.extractors.registry import factory_options, required_weights
from corr.extractors.sd import SDExtractor, build_sd_models
from corr.protocols import get_protocol


@pytest.fixture(scope="module")
def pixels():
    return torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def _pair(**kw):
    """A clean and a noisy extractor on the same tiny random UNet + VAE."""
    m = build_sd_models("sd-tiny", pretrained=False, init_seed=1, vae_encoder_only=True)
    opts = dict(scheduler=m.scheduler, input_size=128, timestep=261, **kw)
    return SDExtractor(m.unet, m.vae, clean=True, **opts), SDExtractor(m.unet, m.vae, **opts)


def test_clean_features_are_the_unet_on_the_clean_latent(pixels):
    clean, noisy = _pair()
    got = clean(pixels)
    cond = clean.conditioning()
    expected = clean.unet_features(clean.encode(pixels), cond)  # z_0 itself, no q_sample
    for name in got:
        assert torch.equal(got[name], expected[name]), name
    noised = noisy(pixels)  # the same UNet on q_sample(z_0, eps, 261): other features
    assert not torch.allclose(got["sd8"], noised["sd8"], atol=1e-3)


def test_timestep_conditions_and_the_noise_seed_does_not(pixels):
    m = build_sd_models("sd-tiny", pretrained=False, init_seed=1, vae_encoder_only=True)
    make = lambda **kw: SDExtractor(m.unet, m.vae, clean=True, input_size=128, **kw)  # noqa: E731
    a = make(timestep=261, seed=1)(pixels)["sd5"]
    assert torch.equal(a, make(timestep=261, seed=7)(pixels)["sd5"])  # no noise drawn
    assert not torch.allclose(a, make(timestep=50, seed=1)(pixels)["sd5"], atol=1e-4)


def test_ensemble_needs_posterior_samples_and_config_records_clean(pixels):
    clean, noisy = _pair()
    with pytest.raises(ValueError, match="ensemble"):
        _pair(ensemble=2)
    sampled, _ = _pair(ensemble=2, latent="sample")
    assert sampled(pixels)["sd2"].shape == clean(pixels)["sd2"].shape
    assert clean.config()["clean"] is True
    assert "clean" not in noisy.config()  # keys of the noisy extractors are unchanged


def test_registered_tiny_and_full_architecture_factories():
    tiny = create_extractor("sd-tiny-cleandift", pretrained=False)
    assert tiny.clean and tiny.timestep == 261 and tiny.config()["model"].startswith("random:")
    with pytest.raises(ValueError, match="clean"):
        create_extractor("sd-tiny-cleandift", pretrained=False, clean=False)
    with pytest.raises(ValueError, match="pretrained=False"):
        create_extractor("sd-tiny-cleandift", pretrained=True)
    assert "sd15-cleandift" in corr.list_extractors() and "sd21-cleandift" in corr.list_extractors()


@pytest.mark.parametrize(
    "protocol, expected",
    [
        ("geoaware", {"timestep": 261, "freeu": False, "tiled": True, "prompt": "A photo of a {category}"}),
        ("dift", {"timestep": 261, "ensemble": 1, "layers": (6,), "latent": "sample", "input_size": 768}),
        ("corr", {"timestep": 261, "freeu": False, "prompt": " "}),
    ],
)  # fmt: skip
def test_protocol_knobs_put_cleandift_settings_over_sd(protocol, expected):
    knobs = factory_options("sd15-cleandift", get_protocol(protocol))
    for key, value in expected.items():
        assert knobs[key] == value, key
    # a user's option still wins over the protocol's
    assert factory_options("sd21-cleandift", get_protocol(protocol), {"sd21-cleandift": {"timestep": 10}})["timestep"] == 10  # fmt: skip


def test_required_weights_are_the_base_folder_and_the_unet_file():
    needs = required_weights("sd21-cleandift", {"path": "/u.safetensors", "base_path": "/sd21"})
    assert [(n.request, n.path, n.kind) for n in needs] == [
        ("sd21", "/sd21", "diffusers"),
        ("sd21-cleandift", "/u.safetensors", "unet-file"),
    ]


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return wdir


def test_weights_load_the_unet_file_over_the_base_folder(weights_env, pixels):
    base = build_sd_models("sd-tiny", pretrained=False, init_seed=3)
    base.unet.save_pretrained(weights_env / "stable-diffusion-v1-5" / "unet")
    base.vae.save_pretrained(weights_env / "stable-diffusion-v1-5" / "vae")
    tuned = build_sd_models("sd-tiny", pretrained=False, init_seed=4).unet.state_dict()
    unet_file = weights_env / "cleandift_sd15_unet.safetensors"
    save_file({k: v.contiguous() for k, v in tuned.items()}, str(unet_file))

    ext = create_extractor("sd15-cleandift", pretrained=True, input_size=128, prompt="")
    for k, v in ext.unet.state_dict().items():
        assert torch.equal(v, tuned[k]), k  # CleanDIFT's UNet, not the base's
    assert torch.equal(ext.vae.encoder.conv_in.weight, base.vae.encoder.conv_in.weight)
    cfg = ext.config()
    assert cfg["clean"] and cfg["timestep"] == 261
    assert cfg["model"].startswith("sd15-cleandift:") and "+sd15:" in cfg["model"]
    # CleanDIFT's files have official sums: a local copy's are recorded, and whether they match
    unet_record = cfg["weights"]["unet"]
    assert unet_record["sha256"] == {unet_file.name: W.file_sha256(unet_file)}
    assert unet_record["official_sha256"] is False
    assert ext(pixels)["sd8"].shape == (1, 32, 8, 8)

    # a UNet file of another architecture is named
    save_file({"conv_in.weight": torch.zeros(1)}, str(unet_file))
    with pytest.raises(W.WeightsFileError, match="cleandift_sd15_unet.safetensors"):
        create_extractor("sd15-cleandift", pretrained=True, input_size=128, prompt="")


def test_missing_weights_are_named_together_before_loading(weights_env):
    with pytest.raises(W.WeightsNotFoundError) as info:
        corr.Matcher(["sd15-cleandift"])
    msg = str(info.value)
    assert "weights sd15 (" in msg and "weights sd15-cleandift (" in msg
    assert "python -m corr.weights download sd15 sd15-cleandift" in msg
