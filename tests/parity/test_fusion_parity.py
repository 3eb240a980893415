"""GeoAware-SC's zero-shot concatenated descriptor (golden/concat_descriptor.json)."""

from __future__ import annotations

import torch

from corr.fusion import build_descriptors


def test_concat_descriptor_matches_the_reference(golden):
    data = golden("concat_descriptor.json")
    maps = {k: torch.tensor(v) for k, v in data["maps"].items()}
    sd = {k: maps[k] for k in ("sd2", "sd5", "sd8")}
    dino = {"dino": maps["dino"]}
    expected = torch.tensor(data["desc"])  # (cells, channels)

    def desc(one_step_maps):
        d, _ = build_descriptors(
            [one_step_maps, dino],
            [one_step_maps, dino],
            [True, False],
            [0.5, 0.5],
            8,
            mode="concat",
        )
        return d.reshape(d.shape[0], -1).T

    torch.testing.assert_close(desc(sd), expected, atol=1e-6, rtol=1e-5)


def test_two_step_stacking_would_not_match(golden):
    from corr.fusion import fuse, l2_normalize, stack_pyramid

    data = golden("concat_descriptor.json")
    sd = [torch.tensor(data["maps"][k]) for k in ("sd2", "sd5", "sd8")]
    dino = torch.tensor(data["maps"]["dino"])
    two_step = l2_normalize(fuse([stack_pyramid(sd, 8), dino], [0.5, 0.5]))
    got = two_step.reshape(two_step.shape[0], -1).T
    assert (got - torch.tensor(data["desc"])).abs().max() > 1e-3
