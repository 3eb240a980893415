"""DINOv3's extraction (golden/dinov3_features.json): timm's DINOv3 architecture loaded from
Meta's layout through our loader, and our extractor's facet, give the patch tokens Meta's own
``get_intermediate_layers`` gave; the wrong facets (no final norm, another block, other
normalisation) do not."""

from __future__ import annotations

import copy

import pytest
import torch
from dinov3_tiny import DEPTH, HEADS, WIDTH, fill_by_name, tiny_pixels

from corr.extractors.dino import DinoExtractor
from corr.extractors.dinov3 import create_dinov3, load_dinov3_state_dict


@pytest.fixture
def golden_data(golden):
    return golden("dinov3_features.json")


@pytest.fixture
def model(golden_data):
    state = fill_by_name({k: torch.zeros(shape) for k, shape in golden_data["keys"].items()})
    m = create_dinov3("vit_small_patch16_dinov3", 96, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS)
    load_dinov3_state_dict(m, state)
    return m


def _error(golden_data, key: str, maps: torch.Tensor) -> float:
    ref = torch.tensor(golden_data[key]["values"]).reshape(golden_data[key]["shape"])
    assert tuple(maps.shape) == tuple(ref.shape)
    return float((maps - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("norm, key", [(True, "norm"), (False, "no_norm")])
def test_tokens_match_meta_dinov3(golden_data, model, norm, key):
    ext = DinoExtractor(model, input_size=96, norm=norm, name="dinov3")
    assert _error(golden_data, key, ext(tiny_pixels())["dino"]) < 1e-5


def test_wrong_facets_fail_the_golden(golden_data, model):
    pixels = tiny_pixels()
    no_norm = DinoExtractor(model, input_size=96, norm=False, name="dinov3")(pixels)["dino"]
    assert _error(golden_data, "norm", no_norm) > 1e-2
    first_block = copy.deepcopy(model)
    first_block.blocks = first_block.blocks[:1]
    out = DinoExtractor(first_block, input_size=96, norm=True, name="dinov3")(pixels)["dino"]
    assert _error(golden_data, "norm", out) > 1e-2
    ext = DinoExtractor(model, input_size=96, norm=True, name="dinov3")
    ext.mean.fill_(0.5)
    ext.std.fill_(0.5)  # [-1, 1] inputs instead of ImageNet's normalisation
    assert _error(golden_data, "norm", ext(pixels)["dino"]) > 1e-2


def test_nonzero_qkv_biases_are_not_dropped(golden_data, model):
    state = fill_by_name({k: torch.zeros(shape) for k, shape in golden_data["keys"].items()})
    state["blocks.0.attn.qkv.bias"] = torch.ones_like(state["blocks.0.attn.qkv.bias"])
    with pytest.raises(ValueError, match="qkvb"):
        load_dinov3_state_dict(copy.deepcopy(model), state)
