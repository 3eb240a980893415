"""FreeU rules of SDExtractor on the tiny random UNet.

The tiny UNet has SD 1.5's layout with block_out_channels (16, 32, 48, 48): its two largest
widths, 48 and 32, play SD's 1280 and 640, so GeoAware's channel rule hits the same decoder
layers as in SD 1.5 (b1/s1 before layers 0-6, b2/s2 before layers 7-9).
"""

from __future__ import annotations

import pytest
import torch
from diffusers.utils.torch_utils import fourier_filter as diffusers_fourier_filter

from corr.extractors import freeu as F
from corr.extractors import sd as S
from corr.extractors import sd_layers as L
from corr.extractors import sd_models as M
from corr.extractors.registry import create_extractor

T = 192
P = F.FREEU_GEOAWARE  # b1 1.2, b2 1.4, s1 0.9, s2 0.2
LAYERS = (2, 5, 8, 11)
TAPS = {  # feature sd{L} = input of decoder layer L (hard-coded, independent of decoder_taps)
    2: "up_blocks.0.resnets.1",
    5: "up_blocks.1.attentions.1",
    8: "up_blocks.2.attentions.1",
    11: "up_blocks.3.attentions.1",
}
# decoder layer -> (channels of h, FreeU stage) for GeoAware's rule on the tiny UNet
GEOAWARE = {i: (48, 1) for i in range(7)} | {7: (32, 2), 8: (32, 2), 9: (32, 2)}


@pytest.fixture(scope="module")
def tiny() -> S.SDExtractor:
    return create_extractor("sd-tiny", pretrained=False, input_size=T)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.rand(1, 3, T, T, generator=torch.Generator().manual_seed(0))


def make(tiny: S.SDExtractor, **kw) -> S.SDExtractor:
    kw.setdefault("input_size", T)
    kw.setdefault("layers", LAYERS)
    return S.SDExtractor(tiny.unet, tiny.vae, model_id="tiny", **kw)


def no_freeu_state(unet) -> bool:
    attrs = all(getattr(blk, k, None) is None for blk in unet.up_blocks for k in P)
    hooks = all(not m._forward_pre_hooks and not m._forward_hooks for m in unet.modules())
    return attrs and hooks


def manual_geoaware(tiny: S.SDExtractor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """GeoAware's loop re-done by hand: full UNet pass, FreeU before the hard-coded layers
    (h's first half x b, skip through diffusers' fourier_filter), then the stored inputs of
    FreeU layers scaled in place as the reference's hooks see them."""
    unet = tiny.unet
    z0 = tiny.encode(pixels)
    eps = tiny.noise(z0.shape[1:], tiny.seed).expand_as(z0)
    z_t = tiny.scheduler.add_noise(z0, eps, torch.tensor([tiny.timestep]))
    resnets = [r for blk in unet.up_blocks for r in blk.resnets]
    held: dict[int, torch.Tensor] = {}
    handles = []

    def pre(c_h: int, stage: int):
        def hook(_m, args):
            x = args[0]
            h, skip = x[:, :c_h].clone(), x[:, c_h:]
            h[:, : c_h // 2] *= P[f"b{stage}"]
            skip = diffusers_fourier_filter(skip, threshold=1, scale=P[f"s{stage}"])
            return (torch.cat([h, skip], dim=1), *args[1:])

        return hook

    for layer, (c_h, stage) in GEOAWARE.items():
        handles.append(resnets[layer].register_forward_pre_hook(pre(c_h, stage)))
    for layer, path in TAPS.items():
        mod = unet.get_submodule(path)
        handles.append(
            mod.register_forward_hook(
                lambda _m, _i, o, layer=layer: held.update({layer: L.as_tensor(o).clone()})
            )
        )
    try:
        with torch.no_grad():
            t = torch.full((1,), tiny.timestep)
            unet(z_t, t, encoder_hidden_states=tiny.conditioning().expand(1, -1, -1))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for layer, m in held.items():
        if layer in GEOAWARE:
            c_h, stage = GEOAWARE[layer]
            m[:, : c_h // 2] *= P[f"b{stage}"]
        out[f"sd{layer}"] = m
    return out


def test_geoaware_rule_matches_a_manual_computation(tiny, pixels):
    got = make(tiny, freeu="geoaware").extract(pixels)
    want = manual_geoaware(tiny, pixels)
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)
    assert no_freeu_state(tiny.unet)


def test_geoaware_in_place_factors(tiny, pixels):
    fr = make(tiny, freeu="geoaware").extract(pixels)
    raw = make(tiny, freeu="geoaware", freeu_inplace=False).extract(pixels)
    for name, c, b in (("sd2", 48, 1.2), ("sd5", 48, 1.2), ("sd8", 32, 1.4)):
        assert fr[name].shape[1] == c
        torch.testing.assert_close(fr[name][:, : c // 2], raw[name][:, : c // 2] * b)
        assert torch.equal(fr[name][:, c // 2 :], raw[name][:, c // 2 :])
    assert torch.equal(fr["sd11"], raw["sd11"])  # 16 channels: not a FreeU layer


def test_geoaware_differs_from_diffusers_where_the_rules_differ(tiny, pixels):
    plain = make(tiny).extract(pixels)
    geo = make(tiny, freeu="geoaware", freeu_inplace=False).extract(pixels)
    dif = make(tiny, freeu="diffusers", freeu_inplace=False).extract(pixels)
    # decoder layers 0 and 1 are b1/s1 under both rules: the input of layer 2 agrees
    torch.testing.assert_close(geo["sd2"], dif["sd2"])
    assert not torch.allclose(geo["sd2"], plain["sd2"])
    # layers 3-4 (b1/s1 vs b2/s2) and 6-7 (FreeU vs none) differ
    assert not torch.allclose(geo["sd5"], dif["sd5"], atol=1e-4)
    assert not torch.allclose(geo["sd8"], dif["sd8"], atol=1e-4)
    # the stored features' in-place factors: sd5 1.2 vs 1.4, sd8 1.4 vs none
    geo_in = make(tiny, freeu="geoaware").extract(pixels)
    dif_in = make(tiny, freeu="diffusers").extract(pixels)
    torch.testing.assert_close(geo_in["sd5"][:, :24], geo["sd5"][:, :24] * 1.2)
    torch.testing.assert_close(dif_in["sd5"][:, :24], dif["sd5"][:, :24] * 1.4)
    torch.testing.assert_close(geo_in["sd8"][:, :16], geo["sd8"][:, :16] * 1.4)
    assert torch.equal(dif_in["sd8"], dif["sd8"])


def test_stages_of_both_rules(tiny):
    geo = F.freeu_stages(tiny.unet, "geoaware")
    assert geo == {layer: stage for layer, (_, stage) in GEOAWARE.items()}
    assert F.freeu_stages(tiny.unet, "diffusers") == {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
    assert F.freeu_stages(tiny.unet, True) == F.freeu_stages(tiny.unet, "diffusers")
    assert F.freeu_stages(tiny.unet, None) == {} == F.freeu_stages(tiny.unet, False)
    chans = L.decoder_channels(tiny.unet)
    assert [c for c, _ in chans] == [48] * 7 + [32] * 3 + [16] * 2
    resnets = [r for blk in tiny.unet.up_blocks for r in blk.resnets]
    assert all(c + s == r.in_channels for (c, s), r in zip(chans, resnets, strict=True))


def test_widths_follow_the_model_config():
    assert F.geoaware_freeu_channels(M.load_config("sd15_unet")) == (1280, 640)
    assert F.geoaware_freeu_channels(M.load_config("sd21_unet")) == (1280, 640)
    assert F.geoaware_freeu_channels(M.load_config("sd_tiny_unet")) == (48, 32)
    assert F.geoaware_freeu_channels({"block_out_channels": [8, 8]}) == (8, None)
    widths = (1280, 640)
    stages = [F.geoaware_freeu_stage(c, widths) for c in (1280, 640, 320)]
    assert stages == [1, 2, None]


def test_a_unet_with_other_widths():
    """Channels (8, 16, 24): 24 -> b1/s1, 16 -> b2/s2, wherever they occur."""
    cfg = M.load_config("sd_tiny_unet") | {
        "block_out_channels": [8, 16, 24, 24],
        "norm_num_groups": 8,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = M.import_diffusers().UNet2DConditionModel.from_config(cfg)
    assert [c for c, _ in L.decoder_channels(unet)] == [24] * 7 + [16] * 3 + [8] * 2
    assert F.freeu_stages(unet, "geoaware") == {i: 1 for i in range(7)} | {7: 2, 8: 2, 9: 2}


def test_the_unet_is_left_unchanged(tiny, pixels):
    before = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    plain = make(tiny).extract(pixels)
    for rule in ("geoaware", "diffusers"):
        make(tiny, freeu=rule).extract(pixels)
        assert no_freeu_state(tiny.unet), rule
    after = tiny.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    again = make(tiny).extract(pixels)
    assert all(torch.equal(plain[k], again[k]) for k in plain)


def test_freeu_set_on_the_unet_is_suspended_and_restored(tiny, pixels):
    geo = make(tiny, freeu="geoaware").extract(pixels)
    plain = make(tiny).extract(pixels)
    tiny.unet.enable_freeu(s1=0.5, s2=0.5, b1=1.5, b2=1.5)
    try:
        assert torch.equal(make(tiny, freeu="geoaware").extract(pixels)["sd8"], geo["sd8"])
        assert torch.equal(make(tiny).extract(pixels)["sd8"], plain["sd8"])
        assert all(blk.b1 == 1.5 and blk.s2 == 0.5 for blk in tiny.unet.up_blocks)
    finally:
        tiny.unet.disable_freeu()
    assert no_freeu_state(tiny.unet)


def test_freeu_values_and_config(tiny):
    assert make(tiny).config()["freeu"] is False
    assert make(tiny, freeu=None).config()["freeu"] is False
    dif = make(tiny, freeu=True).config()
    assert dif == make(tiny, freeu="diffusers").config()
    assert dif["freeu"] == "diffusers" and "freeu_channels" not in dif
    geo = make(tiny, freeu="geoaware").config()
    assert geo["freeu"] == "geoaware" and geo["freeu_channels"] == [48, 32]
    assert geo["freeu_params"] == dict(sorted(P.items())) and geo["freeu_inplace"] is True
    assert make(tiny, freeu="GeoAware").freeu == "geoaware"
    assert len({str(c) for c in (dif, geo, make(tiny).config())}) == 3
    with pytest.raises(ValueError, match="freeu must be"):
        make(tiny, freeu="freeu-v2")
    with pytest.raises(ValueError, match="freeu_params lacks"):
        make(tiny, freeu="geoaware", freeu_params={"b1": 1.2})
