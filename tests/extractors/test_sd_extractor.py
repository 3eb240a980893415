"""SDExtractor on the tiny random UNet/VAE (same diffusers classes and layer map as SD 1.5)."""

from __future__ import annotations

import time

import pytest
import torch

from corr.extractors import sd as S
from corr.extractors import sd_models as M
from corr.extractors.registry import create_extractor, list_extractors
from corr.weights import WeightsNotFoundError

T = 192  # tiny model: latent 24; grids 3 / 6 / 12 / 24 (SD 1.5 at 960: 15 / 30 / 60 / 120)


@pytest.fixture(scope="module")
def tiny() -> S.SDExtractor:
    return S.sd_tiny(pretrained=False, input_size=T)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, T, T, generator=g)


@pytest.fixture(scope="module")
def batch2() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, T, T, generator=g)


def make(tiny: S.SDExtractor, **kw) -> S.SDExtractor:
    """Another extractor sharing the tiny model objects."""
    kw.setdefault("input_size", T)
    return S.SDExtractor(tiny.unet, tiny.vae, model_id="tiny", **kw)


def expected_shape(unet, layer: int, size: int) -> tuple[int, int, int]:
    """The layer table, scaled: channels from block_out_channels reversed, grids latent/8..1."""
    rev = list(reversed(unet.config.block_out_channels))
    latent = size // 8
    if layer == 0:
        return rev[0], latent // 8, latent // 8
    b, j = divmod(layer - 1, 3)
    up = b + (1 if j == 2 and b < 3 else 0)  # upsamplers done by then
    grid = latent // 2 ** (3 - up)
    return rev[b], grid, grid


def test_layer_map_paths(tiny):
    paths = {layer: S.sd_layer_module(tiny.unet, layer)[0] for layer in (0, 2, 3, 5, 8, 11, 12)}
    assert paths == {
        0: "mid_block",
        2: "up_blocks.0.resnets.1",
        3: "up_blocks.0.upsamplers.0",
        5: "up_blocks.1.attentions.1",
        8: "up_blocks.2.attentions.1",
        11: "up_blocks.3.attentions.1",
        12: "up_blocks.3.attentions.2",
    }
    with pytest.raises(ValueError):
        S.sd_layer_module(tiny.unet, 13)


@pytest.mark.parametrize("layers", [(2, 5, 8), (11,), tuple(range(13))])
def test_hooked_shapes_match_layer_table(tiny, batch2, layers):
    ext = make(tiny, layers=layers)
    maps = ext.extract(batch2)
    assert sorted(maps) == sorted(f"sd{layer}" for layer in layers)
    for layer in layers:
        m = maps[f"sd{layer}"]
        assert m.dtype == torch.float32
        assert tuple(m.shape) == (2, *expected_shape(tiny.unet, layer, T)), layer
    if layers == (2, 5, 8):  # the tiny counterpart of 1280x15, 1280x30, 640x60
        assert [tuple(maps[k].shape[1:]) for k in ("sd2", "sd5", "sd8")] == [
            (48, 3, 3),
            (48, 6, 6),
            (32, 12, 12),
        ]


def test_full_size_configs_reproduce_the_reference_table():
    """The bundled SD 1.5 / 2.1 configs, built on the meta device (no memory, no weights)."""
    d = M.import_diffusers()
    table = {0: (1280, 15), 2: (1280, 15), 5: (1280, 30), 8: (640, 60), 11: (320, 120)}
    for name in ("sd15", "sd21"):
        with torch.device("meta"):
            unet = d.UNet2DConditionModel.from_config(S.load_config(f"{name}_unet"))
            vae = d.AutoencoderKL.from_config(S.load_config(f"{name}_vae"))
        ext = S.SDExtractor(unet, vae, layers=tuple(table), model_id="meta")
        assert ext.input_size == 960 and ext.max_stride == 64
        z = torch.zeros(1, 4, 120, 120, device="meta")
        maps = ext.unet_features(z, ext.conditioning())
        for layer, (c, g) in table.items():
            assert tuple(maps[f"sd{layer}"].shape) == (1, c, g, g), (name, layer)


def _count_calls(modules):
    calls = {name: 0 for name in modules}
    handles = []
    for name, mod in modules.items():

        def hook(*_args, _name=name):
            calls[_name] += 1

        handles.append(mod.register_forward_hook(hook))
    return calls, handles


def test_unet_stops_after_last_hooked_module(tiny, pixels):
    u = tiny.unet
    watched = {
        "up3": u.up_blocks[3],
        "conv_out": u.conv_out,
        "up2.resnets2": u.up_blocks[2].resnets[2],
        "up2.attn1": u.up_blocks[2].attentions[1],
        "up3.attn1": u.up_blocks[3].attentions[1],
        "up3.resnets2": u.up_blocks[3].resnets[2],
        "up3.attn2": u.up_blocks[3].attentions[2],
    }
    calls, handles = _count_calls(watched)
    try:
        make(tiny, layers=(2, 5, 8)).extract(pixels)
        assert calls == {**dict.fromkeys(watched, 0), "up2.attn1": 1}
        calls.update(dict.fromkeys(calls, 0))
        make(tiny, layers=(11,)).extract(pixels)
        assert calls["up3.attn1"] == 1 and calls["up2.resnets2"] == 1
        assert calls["up3.resnets2"] == 0 and calls["up3.attn2"] == 0
        assert calls["up3"] == 0 and calls["conv_out"] == 0
    finally:
        for h in handles:
            h.remove()
    # no hook is left behind on the UNet
    assert not any(m._forward_hooks for m in tiny.unet.modules())


def test_determinism_by_seed(tiny, pixels):
    a = make(tiny, seed=7).extract(pixels)
    b = make(tiny, seed=7).extract(pixels)
    c = make(tiny, seed=8).extract(pixels)
    for k in a:
        assert torch.equal(a[k], b[k])
        assert not torch.allclose(a[k], c[k])


def test_same_noise_for_every_image_of_a_batch(tiny, batch2):
    ext = make(tiny)
    both = ext.extract(batch2)
    second = ext.extract(batch2[1:])
    for k in both:
        torch.testing.assert_close(both[k][1:], second[k], rtol=1e-4, atol=1e-5)


def test_noise_is_one_fixed_draw_per_seed(tiny):
    ext = make(tiny)
    e1, e2 = ext.noise((4, 3, 3), 42), ext.noise((4, 3, 3), 42)
    assert torch.equal(e1, e2) and e1.shape == (1, 4, 3, 3)
    assert not torch.equal(e1, ext.noise((4, 3, 3), 43))


def test_ensemble_is_mean_of_consecutive_seeds(tiny, pixels):
    ens = make(tiny, seed=3, ensemble=2).extract(pixels)
    s3 = make(tiny, seed=3).extract(pixels)
    s4 = make(tiny, seed=4).extract(pixels)
    for k in ens:
        torch.testing.assert_close(ens[k], (s3[k] + s4[k]) / 2, rtol=0, atol=1e-6)


def test_noising_formula(tiny, pixels):
    ext = make(tiny)
    z0 = ext.encode(pixels)
    eps = ext.noise(z0.shape[1:], 42)
    abar = ext.scheduler.alphas_cumprod[100]
    # scaled_linear betas 0.00085 -> 0.012 over 1000 steps
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert abs(float(abar) - float(torch.cumprod(1 - betas, 0)[100])) < 1e-5
    z_t = ext.scheduler.add_noise(z0, eps.expand_as(z0), torch.tensor([100]))
    torch.testing.assert_close(z_t, abar.sqrt() * z0 + (1 - abar).sqrt() * eps)
    # the encoder uses the posterior mean, scaled
    x = pixels * 2 - 1
    mean = tiny.vae.encode(x).latent_dist.mean
    torch.testing.assert_close(z0, mean * 0.18215)


def test_tiled_matches_hand_stitch(tiny, pixels):
    tile = 128  # offsets 0 and 64 = the coarsest stride (layer 2)
    tiled = make(tiny, tiled=True, tile_size=tile, layers=(2, 5, 8))
    out = tiled.extract(pixels)
    crop_ext = make(tiny, input_size=tile, layers=(2, 5, 8))
    crops = {
        (oy, ox): crop_ext.extract(pixels[..., oy : oy + tile, ox : ox + tile])
        for oy in (0, 64)
        for ox in (0, 64)
    }
    for name, m in out.items():
        assert tuple(m.shape) == (1, *expected_shape(tiny.unet, int(name[2:]), T))
        s = T // m.shape[-1]
        acc = torch.zeros_like(m)
        cnt = torch.zeros(1, 1, *m.shape[-2:])
        for (oy, ox), maps in crops.items():
            c = maps[name]
            acc[..., oy // s : oy // s + c.shape[-2], ox // s : ox // s + c.shape[-1]] += c
            cnt[..., oy // s : oy // s + c.shape[-2], ox // s : ox // s + c.shape[-1]] += 1
        assert cnt.min() >= 1 and cnt.max() == 4
        torch.testing.assert_close(m, acc / cnt, rtol=1e-5, atol=1e-6)
        # corner cells come from one crop only
        torch.testing.assert_close(m[..., 0, 0], crops[(0, 0)][name][..., 0, 0])


def test_size_checks(tiny):
    with pytest.raises(ValueError, match="multiple of 64"):
        make(tiny, input_size=160)
    with pytest.raises(ValueError, match="coarsest feature stride 64"):
        make(tiny, input_size=160, tiled=True, tile_size=128)
    ext = make(tiny)
    with pytest.raises(ValueError):
        ext.extract(torch.rand(1, 3, 100, 100))


def test_empty_prompt_loads_no_text_encoder(tiny, pixels, monkeypatch):
    def boom(self):
        raise AssertionError("text encoder loaded for an empty prompt")

    monkeypatch.setattr(S.SDExtractor, "_load_text_encoder", boom)
    ext = make(tiny, prompt="")
    cond = ext.conditioning("cat")
    assert cond.shape == (1, 77, 32) and not cond.any()
    ext.extract(pixels, category="cat")
    assert ext.text_encoder is None and ext.tokenizer is None


class FakeTokenizer:
    model_max_length = 77

    def __init__(self):
        self.seen = []

    def __call__(self, text, **kw):
        self.seen.append(text)
        ids = torch.tensor([[len(text) % 50] + [0] * 76])

        class Out:
            input_ids = ids

        return Out()


class FakeEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 32)

    def forward(self, ids):
        return (self.emb(ids),)


def test_prompt_with_category(tiny, pixels):
    tok, enc = FakeTokenizer(), FakeEncoder()
    ext = make(tiny, prompt="a photo of a {category}", tokenizer=tok, text_encoder=enc)
    a = ext.extract(pixels, category="cat")
    assert tok.seen == ["a photo of a cat"]
    ext.extract(pixels, category="cat")  # cached
    assert tok.seen == ["a photo of a cat"]
    b = ext.extract(pixels, category="aeroplane")
    assert tok.seen[-1] == "a photo of a aeroplane"
    assert not torch.allclose(a["sd8"], b["sd8"])
    with pytest.raises(ValueError, match="category"):
        ext.extract(pixels)


def test_prompt_without_text_encoder_fails_lazily(tiny, pixels):
    ext = make(tiny, prompt="a photo")  # construction does not load anything
    with pytest.raises(ValueError, match="text encoder"):
        ext.extract(pixels)


def test_prompt_with_a_model_folder_lacking_the_text_encoder(tiny, pixels, tmp_path):
    ext = make(tiny, prompt="a photo of a {category}", text_source=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="text_encoder/ and tokenizer/"):
        ext.extract(pixels, category="cat")


def test_config_covers_every_option(tiny):
    base = make(tiny).config()
    assert base["model"] == "tiny" and base["layers"] == [2, 5, 8]
    variants = [
        dict(layers=(2, 5)),
        dict(timestep=50),
        dict(ensemble=2),
        dict(seed=1),
        dict(prompt="a photo of a {category}"),
        dict(tiled=True, tile_size=128),
        dict(freeu=True),
        dict(freeu="geoaware"),
        dict(input_size=256),
    ]
    seen = [base]
    for kw in variants:
        cfg = make(tiny, **kw).config()
        assert cfg not in seen, kw
        seen.append(cfg)
    # dtype (built on separate models: the extractor casts the modules it is given in place)
    fresh = S.build_sd_models("sd-tiny", pretrained=False)
    cfg = S.SDExtractor(fresh.unet, fresh.vae, input_size=T, model_id="tiny", dtype="bf16").config()
    assert cfg not in seen and cfg["dtype"] == "bf16"
    other_model = S.SDExtractor(tiny.unet, tiny.vae, input_size=T, model_id="other").config()
    assert other_model != base
    # default identity: a fingerprint of the weights
    assert (
        S.SDExtractor(tiny.unet, tiny.vae, input_size=T)
        .config()["model"]
        .startswith("fingerprint:")
    )


def test_freeu_restores_unet_and_scales_like_diffusers_in_place(tiny, pixels):
    plain = make(tiny, layers=(2, 5, 8)).extract(pixels)
    fr = make(tiny, freeu=True, layers=(2, 5, 8)).extract(pixels)
    assert getattr(tiny.unet.up_blocks[0], "b1", None) is None  # FreeU switched off again
    assert not torch.allclose(fr["sd8"], plain["sd8"])  # FreeU changed the decoder
    no_inplace = make(tiny, freeu=True, freeu_inplace=False, layers=(2, 5, 8)).extract(pixels)
    assert not torch.allclose(no_inplace["sd2"], plain["sd2"])  # FreeU acts from up block 0 on
    # in-place emulation: the first half of the channels read by up blocks 0 / 1 scaled by b1 / b2
    torch.testing.assert_close(fr["sd2"][:, :24], no_inplace["sd2"][:, :24] * 1.2)
    assert torch.equal(fr["sd2"][:, 24:], no_inplace["sd2"][:, 24:])
    torch.testing.assert_close(fr["sd5"][:, :24], no_inplace["sd5"][:, :24] * 1.4)
    assert torch.equal(fr["sd5"][:, 24:], no_inplace["sd5"][:, 24:])
    assert torch.equal(fr["sd8"], no_inplace["sd8"])  # read by up block 2: no FreeU scaling

    # what a reference-style hook (no copy, full UNet pass) ends up holding
    ext = make(tiny)
    z0 = ext.encode(pixels)
    z_t = ext.scheduler.add_noise(
        z0, ext.noise(z0.shape[1:], 42).expand_as(z0), torch.tensor([100])
    )
    held = {}
    handles = [
        tiny.unet.up_blocks[0].resnets[1].register_forward_hook(lambda m, i, o: held.update(sd2=o)),
        tiny.unet.up_blocks[1]
        .attentions[1]
        .register_forward_hook(lambda m, i, o: held.update(sd5=o[0])),
    ]
    tiny.unet.enable_freeu(**S.FREEU_GEOAWARE)
    try:
        t = torch.full((1,), 100)
        tiny.unet(z_t, t, encoder_hidden_states=ext.conditioning().expand(1, -1, -1))
    finally:
        tiny.unet.disable_freeu()
        for h in handles:
            h.remove()
    torch.testing.assert_close(fr["sd2"], held["sd2"])
    torch.testing.assert_close(fr["sd5"], held["sd5"])


def test_bf16_runs_and_returns_float32(tiny, pixels):
    ext = S.sd_tiny(pretrained=False, input_size=T, dtype="bf16")
    maps = ext(pixels)
    assert all(m.dtype == torch.float32 for m in maps.values())
    ref = tiny.extract(pixels)
    for k in maps:  # same weights (same init seed), lower precision
        cos = torch.nn.functional.cosine_similarity(maps[k].flatten(), ref[k].flatten(), dim=0)
        assert cos > 0.95


def test_tiny_init_is_deterministic(tiny):
    again = S.build_sd_models("sd-tiny", pretrained=False)
    for a, b in zip(again.unet.state_dict().values(), tiny.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = S.build_sd_models("sd-tiny", pretrained=False, init_seed=1)
    assert not torch.equal(other.unet.conv_in.weight, tiny.unet.conv_in.weight)


def test_registry_and_pretrained_rules(tmp_path, monkeypatch):
    for name in ("sd15", "sd21", "sd", "sd-tiny"):
        assert name in list_extractors()
    ext = create_extractor("sd-tiny", pretrained=False)
    assert isinstance(ext, S.SDExtractor) and ext.group == "sd" and ext.reduce
    assert ext.resample == "lanczos"
    with pytest.raises(ValueError, match="pretrained=False"):
        create_extractor("sd-tiny", pretrained=True)
    with pytest.raises(ValueError, match="model="):
        create_extractor("sd", pretrained=True)

    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("sd15", "sd21"):
        start = time.monotonic()
        with pytest.raises(WeightsNotFoundError) as info:
            create_extractor(name, pretrained=True)
        assert time.monotonic() - start < 10
        assert "python -m corr.weights download" in str(info.value)


def test_sampled_latents_are_seeded_per_draw_and_keyed_apart():
    # DIFT: each draw takes its own posterior sample; reproducible, and a different cache key
    import torch

    from corr.extractors import create_extractor

    x = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    mean = create_extractor("sd-tiny", pretrained=False)
    a = create_extractor("sd-tiny", pretrained=False, latent="sample", ensemble=2)
    b = create_extractor("sd-tiny", pretrained=False, latent="sample", ensemble=2)
    fa, fb, fm = a(x), b(x), mean(x)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)  # seeded
    assert any(not torch.allclose(fa[k], fm[k]) for k in fa)  # not the posterior mean
    assert a.config()["latent"] == "sample" and "latent" not in mean.config()
    z, std = a.encode(x, with_std=True)
    assert torch.equal(z, mean.encode(x)) and (std > 0).all()
    with pytest.raises(ValueError, match="latent must be"):
        create_extractor("sd-tiny", pretrained=False, latent="mode")


def _abar_scaled_linear(start=0.00085, end=0.012, n=1000) -> torch.Tensor:
    """SD's betas, written out: linspace of sqrt(beta), squared; abar_t = prod (1 - beta)."""
    betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def test_sd21_is_built_from_its_own_bundled_configs(monkeypatch):
    """``build_sd_models("sd21")`` uses the SD 2.1 UNet and scheduler configs (the UNet on the
    meta device: no memory, no weights)."""
    import json

    real_models, real_scheduler = M.random_models, M.make_scheduler
    seen = {}

    def on_meta(unet_cfg, vae_cfg, init_seed):
        with torch.device("meta"):
            return real_models(unet_cfg, vae_cfg, init_seed)

    def spy(config=None):
        seen["scheduler"] = config
        return real_scheduler(config)

    monkeypatch.setattr(M, "random_models", on_meta)
    monkeypatch.setattr(M, "make_scheduler", spy)
    models = S.build_sd_models("sd21", pretrained=False)
    # stabilityai/stable-diffusion-2-1: OpenCLIP-H conditioning (1024), linear projections,
    # head dims 5/10/20/20, 96 x 96 latents (768 px), v-prediction under a DDIM config
    cfg = models.unet.config
    assert cfg.cross_attention_dim == 1024 and list(cfg.attention_head_dim) == [5, 10, 20, 20]
    assert cfg.use_linear_projection and cfg.sample_size == 96
    bundled = json.loads((S.CONFIG_DIR / "sd21_scheduler.json").read_text())
    assert seen["scheduler"] == bundled and bundled["prediction_type"] == "v_prediction"
    # noising only needs the betas: DDPM scaled-linear 0.00085 -> 0.012 over 1000 steps
    abar = _abar_scaled_linear()
    got = models.scheduler.alphas_cumprod
    assert len(got) == 1000
    torch.testing.assert_close(got.double(), abar, atol=1e-6, rtol=0)
    assert models.model_id == "random:sd21:init_seed=0"
    ext = S.SDExtractor(
        models.unet, models.vae, scheduler=models.scheduler, timestep=261, model_id=models.model_id
    )
    assert ext.config()["abar_t"] == pytest.approx(float(abar[261]), abs=1e-6)  # DIFT's t


def test_trained_betas_are_used_as_given():
    sched = S.make_scheduler({"trained_betas": [0.1, 0.2, 0.3], "num_train_timesteps": 3})
    # abar = 0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7
    torch.testing.assert_close(
        sched.alphas_cumprod.double(), torch.tensor([0.9, 0.72, 0.504]).double()
    )


def test_a_model_folder_scheduler_config_sets_the_noise(tmp_path, monkeypatch):
    """A folder's scheduler/scheduler_config.json decides the betas, for real weights (the
    weights-folder convention weights/stable-diffusion-2-1/ for sd21) and for random ones."""
    import json
    import shutil

    models = S.build_sd_models("sd-tiny", pretrained=False, init_seed=5)
    folder = tmp_path / "weights" / "stable-diffusion-2-1"
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir()
    shutil.copy(
        S.CONFIG_DIR / "sd21_scheduler.json", folder / "scheduler" / "scheduler_config.json"
    )
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ext = create_extractor("sd21", pretrained=True, input_size=64, timestep=261)
    assert ext.config()["abar_t"] == pytest.approx(float(_abar_scaled_linear()[261]), abs=1e-6)
    assert torch.equal(ext.unet.conv_in.weight, models.unet.conv_in.weight)

    # another schedule: linear betas 1e-4 -> 0.02 over 500 steps (written out by hand)
    linear = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    linear["num_train_timesteps"] = 500
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(linear))
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 500, dtype=torch.float64), 0)
    for pretrained in (True, False):
        ext = create_extractor("sd", model=str(folder), pretrained=pretrained, input_size=64)
        got = ext.scheduler.alphas_cumprod.double()
        torch.testing.assert_close(got, abar, atol=1e-6, rtol=0)
        assert ext.config()["abar_t"] == pytest.approx(float(abar[100]), abs=1e-6)
    with pytest.raises(ValueError, match=r"timestep must be in 0\.\.499, got 500"):
        create_extractor("sd", model=str(folder), pretrained=True, input_size=64, timestep=500)
