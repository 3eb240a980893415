"""GeoAware-SC's AggregationNetwork and its loading rule (golden/adapter_*.json)."""

from __future__ import annotations

import torch

from corr.adapters import AdapterConfig, AggregationNetwork, apply_reference_weights
from corr.adapters.inputs import adapter_groups, adapter_input, normalize_descriptor


def fill(keys_shapes, seed: int) -> dict[str, torch.Tensor]:
    """The fixed random state dict rule the golden files were generated with (see their
    description): one generator, randn per key in order, scaled by the key's kind."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in keys_shapes:
        t = torch.randn(shape, generator=g)
        if key.endswith("norm.weight"):
            t = 1.0 + 0.1 * t
        elif key.endswith("norm.bias"):
            t = 0.1 * t
        elif key.endswith(".weight"):
            t = 0.2 * t
        out[key] = t
    return out


def small_config(data: dict, dims=None) -> AdapterConfig:
    return AdapterConfig(
        feature_dims=tuple(dims if dims is not None else data["feature_dims"]),
        group_names=None,
        projection_dim=data.get("projection_dim", 128),
        num_norm_groups=data.get("num_norm_groups", 32),
        feat_map_dropout=data.get("feat_map_dropout", 0.0),
    )


def reference_loaded(data: dict) -> AggregationNetwork:
    net = AggregationNetwork(small_config(data))
    ours = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in data["keys"]], "state-dict keys differ"
    net.load_state_dict(fill(data["keys"], data["state_dict_seed"]))
    return net


def inputs(data: dict) -> torch.Tensor:
    g = data["grid"]
    gen = torch.Generator().manual_seed(data["input_seed"])
    return torch.randn((2, sum(data["feature_dims"]), g, g), generator=gen)


def test_state_dict_keys_are_the_references(golden):
    data = golden("adapter_forward.json")
    net = AggregationNetwork(small_config(data))
    assert [k for k in net.state_dict()] == [k for k, _ in data["keys"]]


def test_eval_forward_matches_the_reference(golden):
    data = golden("adapter_forward.json")
    net = reference_loaded(data).eval()
    with torch.no_grad():
        out = net(inputs(data))
    torch.testing.assert_close(out, torch.tensor(data["out_eval"]), atol=2e-5, rtol=1e-5)


def test_unbatched_input_gives_the_same_output(golden):
    data = golden("adapter_forward.json")
    net = reference_loaded(data).eval()
    x = inputs(data)
    with torch.no_grad():
        torch.testing.assert_close(net(x[0]), net(x)[0], atol=1e-6, rtol=1e-6)


def test_training_forward_drops_out_the_input_as_the_reference(golden):
    data = golden("adapter_forward.json")
    net = reference_loaded(data).train()
    x = inputs(data)[:1]
    torch.manual_seed(data["dropout_seed"])
    with torch.no_grad():
        out = net(x)
    torch.testing.assert_close(out, torch.tensor(data["out_train"]), atol=2e-5, rtol=1e-5)


def test_normalised_descriptor_matches_normalize_feats(golden):
    data = golden("adapter_forward.json")
    net = reference_loaded(data).eval()
    with torch.no_grad():
        desc = normalize_descriptor(net(inputs(data))[0])  # (P, g, g)
    cells = desc.reshape(desc.shape[0], -1).T
    torch.testing.assert_close(cells, torch.tensor(data["desc_norm"]), atol=1e-6, rtol=1e-5)


def test_seeded_initialisation_is_the_references(golden):
    data = golden("adapter_forward.json")
    torch.manual_seed(data["init_seed"])
    init = AggregationNetwork(small_config(data, data["feature_dims"])).state_dict()
    for key, want in data["init"].items():
        got = init[key]
        assert abs(float(got.double().sum()) - want["sum"]) < 1e-3 * max(1.0, abs(want["sum"])), key
        torch.testing.assert_close(got.flatten()[:3], torch.tensor(want["head"]), atol=1e-6, rtol=0)


def _run_loading_case(case: dict):
    pre = AggregationNetwork(small_config({}, case["pretrained_dims"]))
    pre_sd = fill([(k, list(v.shape)) for k, v in pre.state_dict().items()], 31)
    torch.manual_seed(4)
    cur = AggregationNetwork(small_config({}, case["adapter_dims"]))
    before = {k: v.clone() for k, v in cur.state_dict().items()}
    apply_reference_weights(cur, pre_sd)
    after = cur.state_dict()
    return pre_sd, before, after


def test_loading_rule_matches_load_pretrained_weights(golden):
    data = golden("adapter_loading.json")
    for name, case in data["cases"].items():
        pre_sd, before, after = _run_loading_case(case)
        torch.testing.assert_close(
            after["mixing_weights"], torch.tensor(case["mixing_weights"]), atol=1e-7, rtol=0
        )
        copied = sorted(
            k
            for k in after
            if k in pre_sd and k != "mixing_weights" and torch.equal(after[k], pre_sd[k])
        )
        kept = sorted(
            k for k in after if k != "mixing_weights" and torch.equal(after[k], before[k])
        )
        assert copied == case["copied_keys"], name
        assert kept == case["kept_keys"], name


def test_adapter_input_matches_prepare_feature_paths_and_load(golden):
    data = golden("adapter_input.json")
    gen = torch.Generator().manual_seed(data["seed"])
    sd = {n: torch.randn(data["shapes"][n], generator=gen) for n in ("sd8", "sd5", "sd2")}
    dino = {"dino": torch.randn(data["shapes"]["dino"], generator=gen)}
    x = adapter_input([sd, dino])
    assert tuple(x.shape) == (18, data["grid"], data["grid"])
    assert adapter_groups([sd, dino]) == [("sd8", 6), ("sd5", 5), ("sd2", 4), ("dino", 3)]
    cells = x.reshape(x.shape[0], -1).T
    torch.testing.assert_close(cells, torch.tensor(data["input"]), atol=1e-6, rtol=1e-6)


def _eval_error(data: dict, net: AggregationNetwork, x: torch.Tensor | None = None) -> float:
    with torch.no_grad():
        out = net.eval()(inputs(data) if x is None else x)
    return float((out - torch.tensor(data["out_eval"])).abs().max())


def test_wrong_adapters_fail_the_golden(golden):
    """Deliberately wrong implementations miss the reference's output by far more than the
    tolerance: another GroupNorm, uniform instead of learned mixing, the groups concatenated in
    another order, and a projection without its residual shortcut."""
    data = golden("adapter_forward.json")
    assert _eval_error(data, reference_loaded(data)) < 2e-5  # the right one passes
    other_norm = AggregationNetwork(small_config({**data, "num_norm_groups": 16}))
    other_norm.load_state_dict(fill(data["keys"], data["state_dict_seed"]))
    assert _eval_error(data, other_norm) > 1e-3
    uniform = reference_loaded(data)
    with torch.no_grad():
        uniform.mixing_weights.zero_()
    assert _eval_error(data, uniform) > 1e-3
    parts = torch.split(inputs(data), data["feature_dims"], dim=1)
    reordered = torch.cat(parts[::-1], dim=1)  # the feature groups concatenated backwards
    assert _eval_error(data, reference_loaded(data), reordered) > 1e-3
    no_shortcut = reference_loaded(data)
    for block in no_shortcut.modules():
        if isinstance(getattr(block, "shortcut", None), torch.nn.Module):
            block.shortcut = _Zero()
    assert _eval_error(data, no_shortcut) > 1e-3


class _Zero(torch.nn.Module):
    """A shortcut that adds nothing (a bottleneck without its residual path)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=x.dtype)
