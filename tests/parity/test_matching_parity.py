"""GeoAware-SC's window soft-argmax (golden/window_softargmax.json)."""

from __future__ import annotations

import pytest
import torch

from corr.matching import match_points


def _case(data, case):
    g = data["grid"]
    src = torch.tensor(case["src"]).T.reshape(-1, g, g)
    tgt = torch.tensor(case["tgt"]).T.reshape(-1, g, g)
    q = torch.tensor(data["queries"])
    return src, tgt, torch.stack([q % g, q // g], 1)


@pytest.mark.parametrize("name", ["similar", "low_similarity"])
def test_zeroed_window_softargmax_matches_the_reference(golden, name):
    data = golden("window_softargmax.json")
    case = next(c for c in data["cases"] if c["name"] == name)
    src, tgt, cells = _case(data, case)
    coords, _ = match_points(
        src, tgt, cells, "softargmax", data["window"], data["temperature"], window_mode="zero"
    )
    torch.testing.assert_close(coords, torch.tensor(case["coords"]), atol=1e-4, rtol=0)


def test_excluding_the_window_is_a_different_rule_at_low_similarity(golden):
    data = golden("window_softargmax.json")
    case = next(c for c in data["cases"] if c["name"] == "low_similarity")
    src, tgt, cells = _case(data, case)
    coords, _ = match_points(src, tgt, cells, "softargmax", data["window"], data["temperature"])
    assert (coords - torch.tensor(case["coords"])).abs().max() > 0.1
