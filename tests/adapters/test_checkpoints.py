"""Adapter checkpoints: our safetensors + JSON round trip, GeoAware-SC .PTH files, clear errors."""

from __future__ import annotations

import json
import logging
import pickle

import pytest
import torch

from corr.adapters import (
    AdapterConfig,
    AggregationNetwork,
    load_adapter,
    load_reference_checkpoint,
    read_config,
    save_adapter,
)
from corr.weights import UnsafeWeightsError, WeightsFileError


def cfg(dims=(24, 16, 128), **kw) -> AdapterConfig:
    kw.setdefault("projection_dim", 128)
    return AdapterConfig(feature_dims=dims, group_names=None, **kw)


def trained(config: AdapterConfig, seed: int = 0) -> AggregationNetwork:
    """A network whose every tensor differs from a fresh one (as after training)."""
    torch.manual_seed(seed)
    net = AggregationNetwork(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


def same_output(a: AggregationNetwork, b: AggregationNetwork) -> bool:
    x = torch.randn(2, a.config.in_channels, 5, 5, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_safetensors_round_trip_in_a_folder(tmp_path):
    config = cfg(recipe={"train": "spair trn", "steps": 3}, notes="unit test", grid=5)
    net = trained(config)
    path = save_adapter(net, tmp_path / "run1")
    assert path == tmp_path / "run1" / "adapter.safetensors"
    assert json.loads((tmp_path / "run1" / "adapter.json").read_text())["recipe"]["steps"] == 3
    back = load_adapter(tmp_path / "run1")
    assert not back.training and back.config == config
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in net.state_dict().items())
    assert same_output(net, back)
    assert read_config(tmp_path / "run1" / "adapter.safetensors") == config


def test_safetensors_file_path_and_json_path(tmp_path):
    net = trained(cfg((48,)))
    save_adapter(net, tmp_path / "dino_only.safetensors")
    assert (tmp_path / "dino_only.json").is_file()
    assert same_output(net, load_adapter(tmp_path / "dino_only.json"))
    assert same_output(net, load_adapter(tmp_path / "dino_only.safetensors"))


def test_missing_config_or_weights_named(tmp_path):
    save_adapter(trained(cfg()), tmp_path / "a.safetensors")
    (tmp_path / "a.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"adapter config not found: .*a\.json"):
        load_adapter(tmp_path / "a.safetensors")
    assert same_output(trained(cfg()), load_adapter(tmp_path / "a.safetensors", config=cfg()))
    with pytest.raises(FileNotFoundError, match=r"adapter weights not found: .*nothing"):
        load_adapter(tmp_path / "nothing")
    with pytest.raises(ValueError, match="NAME.safetensors"):
        save_adapter(trained(cfg()), tmp_path / "x.onnx")


def test_config_that_does_not_fit_the_weights_names_the_file(tmp_path):
    save_adapter(trained(cfg()), tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match=r"a\.safetensors: does not fit its config"):
        load_adapter(tmp_path / "a.safetensors", config=cfg((24, 16, 64)))


def test_reference_pth_loads_as_is(tmp_path):
    """A state dict saved as pck_train.py does (torch.save(aggre_net.state_dict())), with the
    released files' upper-case suffix."""
    config = cfg()
    net = trained(config, seed=1)
    path = tmp_path / "best_856.PTH"
    torch.save(net.state_dict(), path)
    loaded = load_reference_checkpoint(path, config)
    assert not loaded.training and same_output(net, loaded)
    assert same_output(net, load_adapter(path, config=config))
    lower = tmp_path / "last.pth"
    torch.save(net.state_dict(), lower)
    assert same_output(net, load_reference_checkpoint(lower, config))


def test_reference_loading_rule_for_an_extra_group(tmp_path, caplog):
    four = trained(cfg((8, 8, 8, 8)), seed=2)
    path = tmp_path / "ap10k_last.PTH"
    torch.save(four.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="corr.adapters"):
        five = load_reference_checkpoint(path, cfg((8, 8, 8, 8, 8)))
    want = torch.cat([four.mixing_weights.data, torch.zeros(1)])
    assert torch.equal(five.mixing_weights.data, want)
    assert "bottleneck_layers.4.0.conv1.weight" in caplog.text and "initial values" in caplog.text


def test_reference_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="GeoAware-SC checkpoint not found"):
        load_reference_checkpoint(tmp_path / "none.PTH")
    torch.save(trained(cfg(projection_dim=256)).state_dict(), tmp_path / "wide.PTH")
    with pytest.raises(ValueError, match=r"wide\.PTH: shapes differ .*projection_dim"):
        load_reference_checkpoint(tmp_path / "wide.PTH", cfg())
    torch.save({"a": torch.ones(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth: no 'mixing_weights'"):
        load_reference_checkpoint(tmp_path / "other.pth", cfg())
    torch.save(trained(cfg((8, 8, 8, 8))).state_dict(), tmp_path / "four.PTH")
    with pytest.raises(ValueError, match="cannot map 4 mixing weights onto an adapter of 3"):
        load_reference_checkpoint(tmp_path / "four.PTH", cfg((8, 8, 8)))
    (tmp_path / "cut.PTH").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(WeightsFileError, match=r"cut\.PTH"):
        load_reference_checkpoint(tmp_path / "cut.PTH", cfg())
    with pytest.raises(WeightsFileError, match="load_adapter"):
        load_reference_checkpoint(tmp_path / "x.safetensors")


def test_unsafe_pickle_is_refused_without_running_it(tmp_path):
    ran = []

    class Evil:
        def __reduce__(self):
            return (ran.append, ("executed",))

    for name in ("evil.PTH", "evil.pth"):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump({"mixing_weights": Evil()}, fh, protocol=2)
        with pytest.raises(UnsafeWeightsError, match=name.replace(".", r"\.")):
            load_reference_checkpoint(tmp_path / name, cfg())
    assert ran == []
