"""AggregationNetwork and AdapterConfig: shapes, errors, generalisation, determinism."""

from __future__ import annotations

import json

import pytest
import torch

from corr.adapters import AdapterConfig, AggregationNetwork


def small(dims=(24, 16, 128), names=None, **kw) -> AdapterConfig:
    kw.setdefault("projection_dim", 128)
    return AdapterConfig(feature_dims=dims, group_names=names, **kw)


def test_reference_default_has_the_references_size():
    net = AggregationNetwork()
    # GeoAware-SC prints "AggregationNetwork has 5150214 parameters." for pck_train.py's network
    assert sum(p.numel() for p in net.parameters()) == 5150214
    assert net.config.feature_dims == (640, 1280, 1280, 768)
    assert net.config.group_names == ("sd8", "sd5", "sd2", "dino")
    assert net.projection_dim == 768 and net.config.feat_map_dropout == 0.2
    # DINO's 768 -> 768 block has no shortcut conv, the SD blocks have one
    assert net.bottleneck_layers[3][0].shortcut is None
    assert all(net.bottleneck_layers[i][0].shortcut is not None for i in range(3))


def test_shapes_batched_and_unbatched():
    net = AggregationNetwork(small()).eval()
    x = torch.randn(3, 168, 5, 5)
    with torch.no_grad():
        out = net(x)
        one = net(x[1])
    assert out.shape == (3, 128, 5, 5) and one.shape == (128, 5, 5)
    torch.testing.assert_close(one, out[1], atol=1e-6, rtol=1e-6)


def test_wrong_channel_count_names_the_groups():
    net = AggregationNetwork(small(names=("sd8", "sd5", "dino")))
    with pytest.raises(
        ValueError, match=r"168 input channels \(sd8 24 \+ sd5 16 \+ dino 128\), got 160"
    ):
        net(torch.randn(1, 160, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, g, g\)"):
        net(torch.randn(168, 16))


@pytest.mark.parametrize("dims", [(48,), (24, 16, 40)])
def test_any_number_of_groups_trains(dims):
    """A DINOv2-only adapter (one group) and a 3-group one: forward, backward, every parameter
    (mixing weights included) receives a gradient."""
    net = AggregationNetwork(small(dims)).train()
    out = net(torch.randn(2, sum(dims), 6, 6))
    assert out.shape == (2, 128, 6, 6)
    (out.square().mean() + net.logit_scale).backward()
    for name, p in net.named_parameters():
        if name == "self_logit_scale":
            continue  # only the reference's unused self-contrastive loss reads it
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.mixing_weights.shape == (len(dims),)
    if len(dims) > 1:
        assert net.mixing_weights.grad.abs().sum() > 0


def test_seeded_construction_is_deterministic():
    torch.manual_seed(3)
    a = AggregationNetwork(small()).state_dict()
    torch.manual_seed(3)
    b = AggregationNetwork(small()).state_dict()
    torch.manual_seed(4)
    c = AggregationNetwork(small()).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(
        a["bottleneck_layers.0.0.conv1.weight"], c["bottleneck_layers.0.0.conv1.weight"]
    )


def test_dropout_only_in_training_mode():
    net = AggregationNetwork(small(feat_map_dropout=0.5))
    x = torch.randn(1, 168, 4, 4)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        torch.manual_seed(0)
        a = net(x)
        torch.manual_seed(1)
        b = net(x)
        torch.manual_seed(0)
        c = net(x)
    assert not torch.equal(a, b) and torch.equal(a, c)


def test_initial_values_follow_the_reference():
    net = AggregationNetwork(small())
    assert net.logit_scale.item() == pytest.approx(2.6592600, rel=1e-6)  # log(1 / 0.07)
    assert net.self_logit_scale.item() == pytest.approx(2.3025851, rel=1e-6)  # log(10)
    assert net.logit_scale.dtype == net.self_logit_scale.dtype == torch.float32
    assert torch.equal(net.mixing_weights.data, torch.ones(3))
    block = net.bottleneck_layers[0][0]
    assert block.conv1.bias is None and isinstance(block.conv1.norm, torch.nn.GroupNorm)
    assert block.conv1.norm.num_groups == 32 and block.conv2.kernel_size == (3, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(projection_dim=100), "divisible by num_norm_groups"),
        (dict(projection_dim=64), "divisible by num_norm_groups"),  # 64 // 4 = 16 < 32 groups
        (dict(feature_dims=()), "positive channel counts"),
        (dict(feature_dims=(12, 0)), "positive channel counts"),
        (dict(feature_dims=(12.5,)), "integer"),
        (dict(group_names=("a",)), "1 names for 3 feature_dims"),
        (dict(kernel_size=(1, 2, 1)), "three odd sizes"),
        (dict(feat_map_dropout=1.0), r"\[0, 1\)"),
        (dict(grid=0), "grid must be positive"),
    ],
)
def test_bad_config_is_refused_clearly(kwargs, match):
    base = dict(feature_dims=(24, 16, 128), group_names=None, projection_dim=128)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        AdapterConfig(**base)


def test_config_json_round_trip_and_errors():
    cfg = small(names=("a", "b", "c"), recipe={"data": "spair trn", "steps": 5}, notes="x", grid=60)
    data = json.loads(cfg.to_json())
    assert data["format"] == "corr-adapter/1" and data["feature_dims"] == [24, 16, 128]
    assert AdapterConfig.from_dict(data) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        AdapterConfig.from_dict({**data, "lr": 1.0}, source="f.json")
    with pytest.raises(ValueError, match="format"):
        AdapterConfig.from_dict({**data, "format": "other/9"})
    with pytest.raises(ValueError, match="f.json: AdapterConfig: projection_dim 100"):
        AdapterConfig.from_dict({**data, "projection_dim": 100}, source="f.json")
