"""DINOv3 through timm: the facet (last block, final norm, class and register tokens dropped),
the grid for any input size, its weights (timm's file or Meta's official layout), the gated
weights' error, its size under the protocols, and fusion with grids that differ."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import corr
from corr import weights as W
from corr.extractors import create_extractor
from corr.extractors.dinov3 import build_dinov3_model, create_dinov3, load_dinov3_state_dict
from corr.extractors.registry import factory_options
from corr.protocols import get_protocol


def test_tokens_are_the_last_block_after_the_norm_without_prefix_tokens():
    ext = create_extractor("dinov3-tiny", pretrained=False, input_size=160)
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    got = ext(x)["dino"]
    assert got.shape == (2, 48, 10, 10)
    model = ext.model
    assert model.num_prefix_tokens == 5  # class + 4 registers
    normed = (x - ext.mean) / ext.std
    tokens = model.forward_features(normed)  # (B, 5 + 100, C), after the final norm
    assert tokens.shape == (2, 105, 48)
    expected = tokens[:, 5:].reshape(2, 10, 10, 48).permute(0, 3, 1, 2)
    assert torch.allclose(got, expected, atol=1e-5)
    before = create_extractor("dinov3-tiny", pretrained=False, input_size=160, norm=False)(x)
    assert not torch.allclose(before["dino"], got, atol=1e-3)
    assert torch.allclose(model.norm(before["dino"].permute(0, 2, 3, 1)).permute(0, 3, 1, 2), got, atol=1e-5)  # fmt: skip


def test_any_multiple_of_16_and_refusals():
    ext = create_extractor("dinov3-tiny", pretrained=False, input_size=192)
    assert ext(torch.rand(1, 3, 224, 224))["dino"].shape[-1] == 14  # rotary: no resampling
    with pytest.raises(ValueError, match="multiple of 16"):
        create_extractor("dinov3-tiny", pretrained=False, input_size=200)
    with pytest.raises(ValueError, match="multiple of 16"):
        ext(torch.rand(1, 3, 200, 200))
    with pytest.raises(ValueError, match="pretrained=False"):
        create_extractor("dinov3-tiny", pretrained=True)
    names = corr.list_extractors()
    for n in ("dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vith16plus", "dinov3_vit7b16"):  # fmt: skip
        assert n in names


def test_protocols_give_the_dinov2_grid():
    for name in ("corr", "sd-dino", "geoaware"):
        assert factory_options("dinov3_vitb16", get_protocol(name))["input_size"] == 960
    assert "input_size" not in factory_options("dinov3_vitb16", get_protocol("dift"))


@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return wdir


def _official_layout(sd: dict) -> dict:
    """timm's DINOv3 keys -> Meta's (storage_tokens, ls1/ls2.gamma, mask_token)."""
    out = {}
    for k, v in sd.items():
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma")
        out[k.replace("gamma_2", "ls2.gamma")] = v
    out["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    return out


def test_timm_and_official_files_load(weights_env):
    src, _ = build_dinov3_model("dinov3_vits16", pretrained=False, input_size=64, init_seed=3)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    timm_file = weights_env / "vit_small_patch16_dinov3.lvd1689m.safetensors"
    save_file(sd, str(timm_file))
    ext = create_extractor("dinov3_vits16", pretrained=True, input_size=64)
    assert torch.equal(ext.model.blocks[11].mlp.fc2.weight, sd["blocks.11.mlp.fc2.weight"])
    assert ext.config()["model"].startswith("dinov3_vits16:") and ext.config()["norm"] is True
    assert ext(torch.rand(1, 3, 64, 64))["dino"].shape == (1, 384, 4, 4)

    timm_file.unlink()
    torch.save(_official_layout(sd), weights_env / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    ext = create_extractor("dinov3_vits16", pretrained=True, input_size=64)
    assert torch.equal(ext.model.reg_token, sd["reg_token"])
    assert torch.equal(ext.model.blocks[0].gamma_1, sd["blocks.0.gamma_1"])

    tiny = create_dinov3("vit_small_patch16_dinov3", 64, embed_dim=48, depth=2, num_heads=3)
    with pytest.raises(ValueError, match="do not fit"):
        load_dinov3_state_dict(tiny, sd)


def test_gated_weights_error_says_how_to_get_them(weights_env):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("dinov3_vitb16")
    msg = str(info.value)
    for needle in (
        "https://huggingface.co/timm/vit_base_patch16_dinov3.lvd1689m",
        "accept the DINOv3 License",
        "hf auth login",
        "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth",
        str(weights_env),
        "python -m corr.weights download dinov3_vitb16",
    ):
        assert needle in msg, needle
    with pytest.raises(W.WeightsNotFoundError) as info:  # the preflight's one message too
        corr.Matcher(["sd-tiny", "dinov3_vitl16"])
    assert "accept the DINOv3 License" in str(info.value)
    assert "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth" in str(info.value)


@pytest.mark.parametrize("fusion", ["copca", "concat"])
@pytest.mark.parametrize("first", ["sd-tiny", "dinov2-tiny", "sd-tiny-cleandift"])
def test_fusion_with_unequal_grids(first, fusion):
    """SD (12 x 12 at 192 px), DINOv2 (12 x 12 at 168 px) or CleanDIFT with DINOv3 at 208 px
    (13 x 13): the last extractor's grid is the output grid, the others are resized to it."""
    m = corr.Matcher(
        [first, "dinov3-tiny"],
        pretrained=False,
        fusion=fusion,
        pca_dim=8,
        extractor_options={"dinov3-tiny": {"input_size": 208}},
    )
    a = torch.rand(3, 150, 120, generator=torch.Generator().manual_seed(1))
    b = torch.rand(3, 130, 170, generator=torch.Generator().manual_seed(2))
    pair = m.pair(a, b)
    ds, dt = pair.descriptors
    assert ds.shape[-2:] == (13, 13) and dt.shape[-2:] == (13, 13)
    out = pair.match([[10.0, 20.0], [100.0, 140.0]])
    assert out.keypoints1.shape == (2, 2)
    assert ((out.keypoints1 >= 0) & (out.keypoints1 <= [169, 129])).all()
