"""Matcher(adapter=...): the adapter replaces fusion, picks the evaluation, and is recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import corr
from corr.adapters import (
    AdapterConfig,
    AggregationNetwork,
    adapter_descriptor,
    adapter_groups,
    save_adapter,
)
from corr.samples import sample_path

SRC, TGT = sample_path("gazelle.jpg"), sample_path("jaguar.jpg")


class TwoScales(torch.nn.Module):
    """A fixed random two-scale conv net (strides 4 and 8): two feature groups."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, 2, 2), torch.nn.ReLU())
        self.b = torch.nn.Conv2d(16, 24, 5, 2, 2)
        self.c = torch.nn.Conv2d(24, 32, 3, 2, 1)

    def forward(self, x):
        y = self.b(self.a(x))
        return [y, self.c(y)]


def matcher(**kwargs) -> corr.Matcher:
    ext = corr.ModuleExtractor(TwoScales(), input_size=96, name="two-scales")
    return corr.Matcher([ext], device="cpu", **kwargs)


@pytest.fixture(scope="module")
def net():
    maps = matcher().features(SRC).maps
    torch.manual_seed(0)
    config = AdapterConfig.for_groups(adapter_groups(maps), projection_dim=32, num_norm_groups=8)
    return AggregationNetwork(config).eval()


def test_the_adapter_makes_each_images_descriptor(net):
    m = matcher(adapter=net)
    pair = m.pair(SRC, TGT)
    (fs, ft), (ds, dt) = pair.features, pair.descriptors
    with torch.no_grad():
        torch.testing.assert_close(ds, adapter_descriptor(net, fs.maps), rtol=0, atol=0)
        torch.testing.assert_close(dt, adapter_descriptor(net, ft.maps), rtol=0, atol=0)
    assert ds.shape[0] == 32  # the projection, not the extractor's channels
    torch.testing.assert_close(ds.norm(dim=0), torch.ones(ds.shape[1:]), rtol=0, atol=1e-5)
    # a pair's descriptors do not depend on its partner (no co-PCA)
    other = m.pair(SRC, SRC).descriptors[0]
    torch.testing.assert_close(other, ds, rtol=0, atol=0)
    out = m.match(SRC, TGT, [[291, 312], [100, 200]])
    assert np.isfinite(out.keypoints1).all()
    # the points differ from zero-shot fusion's: the descriptors are the adapter's
    zero_shot = matcher().match(SRC, TGT, [[291, 312]])
    assert not np.allclose(zero_shot.keypoints1[0], out.keypoints1[0])


def test_evaluation_follows_the_adapter_unless_given(net, tmp_path):
    m = matcher(adapter=net)
    assert (m.method, m.window) == ("softargmax", 7)  # GeoAware-SC's supervised evaluation
    assert matcher().window == 5  # zero-shot
    m = matcher(adapter=net, window=3)
    assert m.window == 3 and m.overrides["window"] == 3
    nn_net = AggregationNetwork(
        AdapterConfig.from_dict({**net.config.to_dict(), "recipe": {"soft_eval": False}})
    )
    nn_net.load_state_dict(net.state_dict())
    assert matcher(adapter=nn_net).method == "nn"


def test_fusion_knobs_are_refused_and_the_run_records_the_adapter(net, tmp_path):
    for bad in ({"fuse": 0.3}, {"weights": [1]}, {"pca_dim": 64}, {"fusion": "concat"}):
        with pytest.raises(ValueError, match="an adapter replaces fusion"):
            matcher(adapter=net, **bad)
    path = save_adapter(net, tmp_path / "mine")
    m = matcher(adapter=tmp_path / "mine")
    rec = m.config()["adapter"]
    import hashlib

    assert rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec["name"] == str(tmp_path / "mine") and "path" not in rec
    assert rec["groups"] == net.config.describe_groups()
    with pytest.raises(FileNotFoundError, match="not a registered name"):
        matcher(adapter=tmp_path / "nothing")
    with pytest.raises(ValueError, match="the adapter was built for"):
        ext = corr.ModuleExtractor(torch.nn.Conv2d(3, 8, 8, 8), input_size=96, name="other")
        corr.Matcher([ext], device="cpu", adapter=net).match(SRC, TGT, [[1, 1]])
