"""DinoExtractor on a tiny random DINOv2-like timm ViT (patch 14, layer scale, registers)."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from corr.extractors import dino as D
from corr.extractors.registry import create_extractor, list_extractors
from corr.weights import WeightsNotFoundError

T = 168  # 12 x 12 patches (the reference: 840 -> 60 x 60)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.rand(2, 3, T, T, generator=torch.Generator().manual_seed(0))


def by_hand(model, pixels: torch.Tensor) -> torch.Tensor:
    """Last block's tokens before the final norm, prefix tokens dropped, run block by block."""
    mean = torch.tensor(D.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D.IMAGENET_STD).view(1, 3, 1, 1)
    x = model.patch_embed((pixels - mean) / std)
    x = model._pos_embed(x)
    for blk in model.blocks:
        x = blk(x)
    n = 1 + (model.reg_token.shape[1] if model.reg_token is not None else 0)
    assert model.num_prefix_tokens == n
    g = pixels.shape[-1] // 14
    return x[:, n:].reshape(x.shape[0], g, g, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("reg_tokens", [0, 4])
def test_tokens_before_final_norm_prefix_dropped(pixels, reg_tokens):
    ext = D.dinov2_tiny(pretrained=False, input_size=T, reg_tokens=reg_tokens)
    out = ext(pixels)
    assert list(out) == ["dino"]
    assert out["dino"].shape == (2, 48, T // 14, T // 14) and out["dino"].dtype == torch.float32
    with torch.no_grad():
        ref = by_hand(ext.model, pixels)
        torch.testing.assert_close(out["dino"], ref, rtol=1e-5, atol=1e-5)
        normed = ext.model.norm(ref.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert not torch.allclose(out["dino"], normed, atol=1e-3)  # the final norm is not applied
    assert ext.group == "dino" and not ext.reduce and ext.resample == "lanczos"


def test_registers_are_dropped(pixels):
    ext = D.dinov2_tiny(pretrained=False, input_size=T, reg_tokens=4)
    assert ext.model.num_prefix_tokens == 5
    with torch.no_grad():
        x = ext.model._pos_embed(ext.model.patch_embed((pixels - ext.mean) / ext.std))
        for blk in ext.model.blocks:
            x = blk(x)
    g = T // 14
    # the patch tokens are the last g*g; the 5 class/register tokens are not in the output
    expected = x[:, -g * g :].reshape(2, g, g, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(ext(pixels)["dino"], expected, rtol=1e-5, atol=1e-5)
    assert x.shape[1] == 5 + g * g


def test_determinism(pixels):
    a = D.dinov2_tiny(pretrained=False, input_size=T)
    b = D.dinov2_tiny(pretrained=False, input_size=T)
    c = D.dinov2_tiny(pretrained=False, input_size=T, init_seed=1)
    fa = a(pixels)["dino"]
    assert torch.equal(fa, a(pixels)["dino"])
    assert torch.equal(fa, b(pixels)["dino"])
    assert not torch.allclose(fa, c(pixels)["dino"])
    assert a.config() == b.config() != c.config()


def test_840_input_uses_a_60x60_position_grid():
    ext = D.dinov2_tiny(pretrained=False, input_size=840, depth=1)
    assert ext.model.pos_embed.shape == (1, 1 + 60 * 60, 48)
    out = ext(torch.rand(1, 3, 840, 840))["dino"]
    assert out.shape == (1, 48, 60, 60)


def test_size_must_be_a_multiple_of_14():
    with pytest.raises(ValueError, match="multiple of 14"):
        D.dinov2_tiny(pretrained=False, input_size=100)
    ext = D.dinov2_tiny(pretrained=False, input_size=T)
    with pytest.raises(ValueError, match="multiple of 14"):
        ext(torch.rand(1, 3, 100, 100))


def test_bf16(pixels):
    ref = D.dinov2_tiny(pretrained=False, input_size=T)(pixels)["dino"]
    ext = D.dinov2_tiny(pretrained=False, input_size=T, dtype="bf16")
    out = ext(pixels)["dino"]
    assert out.dtype == torch.float32 and ext.config()["dtype"] == "bf16"
    assert F.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.99


def official_state_dict(reg: bool, dim: int = 48, depth: int = 2, seed: int = 0) -> dict:
    """A tiny state dict in the layout of Facebook's dinov2_*_pretrain.pth (37 x 37 grid)."""
    src = D.build_tiny_dinov2(518, 4 if reg else 0, init_seed=seed, embed_dim=dim, depth=depth)
    g = torch.Generator().manual_seed(seed + 100)
    sd = {k: v.clone() for k, v in src.state_dict().items() if k not in ("reg_token",)}
    sd["pos_embed"] = torch.randn(1, 1 + 37 * 37, dim, generator=g) * 0.5  # class position first
    sd["cls_token"] = torch.randn(1, 1, dim, generator=g)
    sd["mask_token"] = torch.zeros(1, dim)
    if reg:
        sd["register_tokens"] = torch.randn(1, 4, dim, generator=g)
    for k in list(sd):  # bigger layer scale so the blocks matter
        if k.endswith(".gamma"):
            sd[k] = torch.full_like(sd[k], 0.5)
    return sd


def official_forward(sd: dict, blocks, pixels: torch.Tensor) -> torch.Tensor:
    """facebookresearch/dinov2 DinoVisionTransformer.prepare_tokens + blocks, re-written."""
    mean = torch.tensor(D.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D.IMAGENET_STD).view(1, 3, 1, 1)
    x = (pixels - mean) / std
    B, _, w, h = x.shape
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((sd["cls_token"].expand(B, -1, -1), x), dim=1)
    pos = sd["pos_embed"].float()
    n = pos.shape[1] - 1
    dim = x.shape[-1]
    w0, h0 = w // 14 + 0.1, h // 14 + 0.1
    patch_pos = F.interpolate(
        pos[:, 1:].reshape(1, int(math.sqrt(n)), int(math.sqrt(n)), dim).permute(0, 3, 1, 2),
        scale_factor=(float(w0 / math.sqrt(n)), float(h0 / math.sqrt(n))),
        mode="bicubic",
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
    x = x + torch.cat((pos[:, :1], patch_pos), dim=1)
    n_prefix = 1
    if "register_tokens" in sd:
        x = torch.cat((x[:, :1], sd["register_tokens"].expand(B, -1, -1), x[:, 1:]), dim=1)
        n_prefix += sd["register_tokens"].shape[1]
    for blk in blocks:
        x = blk(x)
    g = w // 14
    return x[:, n_prefix:].reshape(B, g, g, dim).permute(0, 3, 1, 2)


@pytest.mark.parametrize("reg", [False, True])
def test_official_checkpoint_layout_converts_exactly(pixels, reg):
    sd = official_state_dict(reg)
    model = D.build_tiny_dinov2(T, 4 if reg else 0, init_seed=5)  # different random init
    D.load_dinov2_state_dict(model, sd)
    ext = D.DinoExtractor(model, input_size=T, model_id="official-tiny")
    out = ext(pixels)["dino"]
    with torch.no_grad():
        ref = official_forward(sd, model.blocks, pixels)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the official interpolation differs from timm's own (size=, antialias=True) resampling
    timm_pos = D.import_timm().layers.resample_abs_pos_embed(
        sd["pos_embed"], new_size=(12, 12), num_prefix_tokens=1
    )
    ours = model.pos_embed if not reg else torch.cat([sd["pos_embed"][:, :1], model.pos_embed], 1)
    assert not torch.allclose(ours[:, 1:], timm_pos[:, 1:], atol=1e-4)


def test_timm_layout_loads_with_the_official_interpolation(pixels):
    src = D.build_tiny_dinov2(518, 4, init_seed=3)  # timm register model: no class position
    sd = src.state_dict()
    model = D.build_tiny_dinov2(T, 4, init_seed=4)
    D.load_dinov2_state_dict(model, sd)
    for k, v in sd.items():
        if k != "pos_embed":
            assert torch.equal(model.state_dict()[k], v), k
    expected = D.resample_pos_embed_dinov2(sd["pos_embed"], 0, (12, 12))
    assert torch.equal(model.pos_embed.data, expected)
    with pytest.raises(ValueError, match="do not fit"):
        D.load_dinov2_state_dict(D.build_tiny_dinov2(T, 0, embed_dim=48, depth=3), sd)


def test_registry_and_pretrained_rules(tmp_path, monkeypatch):
    names = list_extractors()
    for size in "sblg":
        assert f"dinov2_vit{size}14" in names and f"dinov2_vit{size}14_reg" in names
    assert "dinov2-tiny" in names
    with pytest.raises(ValueError, match="pretrained=False"):
        create_extractor("dinov2-tiny", pretrained=True)
    assert create_extractor("dinov2-tiny", pretrained=False).input_size == 168

    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("dinov2_vitb14", "dinov2_vits14_reg"):
        start = time.monotonic()
        with pytest.raises(WeightsNotFoundError) as info:
            create_extractor(name, pretrained=True)
        assert time.monotonic() - start < 10
        assert f"python -m corr.weights download {name}" in str(info.value)


def test_full_architecture_random_init_on_meta():
    """pretrained=False builds the full ViT-B/14 at 840 px (checked on the meta device)."""
    with torch.device("meta"):
        model, model_id = D.build_dinov2_model("dinov2_vitb14", pretrained=False)
    assert model_id == "random:dinov2_vitb14:init_seed=0"
    assert model.pos_embed.shape == (1, 1 + 60 * 60, 768) and len(model.blocks) == 12
    ext = D.DinoExtractor(model, model_id="meta").to("meta")
    out = ext(torch.rand(1, 3, 840, 840, device="meta"))
    assert out["dino"].shape == (1, 768, 60, 60)
