"""GeoAware-SC's FreeU rule, step by step (golden/freeu.json).

The fixture holds, for each SD 1.5 decoder layer (ODISE output block 0..11), what the
reference's decoder loop makes of a fixed h and skip: the scaled h (= the stored feature, scaled
in place) and the Fourier-filtered skip. Here the same step is recomputed with our rule
(:func:`geoaware_freeu_stage` on the SD 1.5 widths) and :func:`freeu_layer`.
"""

from __future__ import annotations

import pytest
import torch

from corr.extractors import freeu as F
from corr.extractors import sd_layers as L
from corr.extractors import sd_models as M


def field(c: int, block: int, size: int, a: float, phase: float) -> torch.Tensor:
    """The fixture's inputs (see its ``description``)."""
    cc = torch.arange(c, dtype=torch.float64).view(1, c, 1, 1)
    yy = torch.arange(size, dtype=torch.float64).view(1, 1, size, 1)
    xx = torch.arange(size, dtype=torch.float64).view(1, 1, 1, size)
    v = torch.sin(a * cc + 1.3 * yy + 0.71 * xx + 0.05 * block + phase)
    return (v + 0.25 * torch.cos(0.11 * cc * (yy + 1) - 0.5 * xx)).float()


def sd15_widths() -> tuple[int, int | None]:
    return F.geoaware_freeu_channels(M.load_config("sd15_unet"))


def step(data: dict, entry: dict, stage_of) -> dict:
    """Our FreeU step for one fixture block, with ``stage_of(block, h_channels)`` as the rule."""
    i, c, cs, n = entry["block"], entry["h_channels"], entry["skip_channels"], data["size"]
    h = field(c, i, n, data["inputs"]["h"]["a"], data["inputs"]["h"]["phase"])
    skip = field(cs, i, n, data["inputs"]["skip"]["a"], data["inputs"]["skip"]["phase"])
    stage = stage_of(i, c)
    if stage is not None:
        p = data["params"]
        h, skip = F.freeu_layer(h, skip, p[f"b{stage}"], p[f"s{stage}"])
    return {
        "h_sum": h.double().sum().item(),
        "h_sq_sum": (h.double() ** 2).sum().item(),
        "h_values": [h[0, k, 1, 2].item() for k in (0, c // 2 - 1, c // 2, c - 1)],
        "skip_sum": skip.double().sum().item(),
        "skip_sq_sum": (skip.double() ** 2).sum().item(),
        "skip_values": skip[0, 0].flatten().tolist(),
    }


def close(got: dict, entry: dict) -> bool:
    return all(
        torch.allclose(
            torch.tensor(got[k], dtype=torch.float64),
            torch.tensor(entry[k], dtype=torch.float64),
            rtol=1e-5,
            atol=1e-5,
        )
        for k in got
    )


def test_fixture_is_geoawares_freeu(golden):
    data = golden("freeu.json")
    assert data["params"] == F.FREEU_GEOAWARE
    assert data["source"]["repository"] == "Junyi42/GeoAware-SC"


def test_sd15_widths_and_layer_channels_are_the_references(golden):
    assert sd15_widths() == (1280, 640)  # the reference's literal 1280 / 640
    with torch.device("meta"):  # the SD 1.5 architecture without allocating weights
        unet = M.import_diffusers().UNet2DConditionModel.from_config(M.load_config("sd15_unet"))
    data = golden("freeu.json")
    assert L.decoder_channels(unet) == [
        (e["h_channels"], e["skip_channels"]) for e in data["blocks"]
    ]
    assert F.freeu_stages(unet, "geoaware") == {i: 1 for i in range(7)} | {7: 2, 8: 2, 9: 2}
    assert F.freeu_stages(unet, "diffusers") == {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2}


def test_geoaware_rule_matches_the_reference_per_layer(golden):
    data = golden("freeu.json")
    widths = sd15_widths()
    for entry in data["blocks"]:
        got = step(data, entry, lambda _i, c: F.geoaware_freeu_stage(c, widths))
        for k, v in got.items():
            torch.testing.assert_close(
                torch.tensor(v, dtype=torch.float64),
                torch.tensor(entry[k], dtype=torch.float64),
                rtol=1e-5,
                atol=1e-5,
                msg=lambda m, i=entry["block"], k=k: f"block {i} {k}: {m}",
            )
        # the stored feature is the scaled h exactly where the rule fires
        assert entry["stored_scaled_in_place"] == (
            F.geoaware_freeu_stage(entry["h_channels"], widths) is not None
        )


def test_block_index_rule_would_not_match(golden):
    """diffusers' rule (b1/s1 in up block 0, b2/s2 in up block 1) fails blocks 3-9."""
    data = golden("freeu.json")
    by_index = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
    mismatched = [
        e["block"]
        for e in data["blocks"]
        if not close(step(data, e, lambda i, _c: by_index.get(i)), e)
    ]
    assert mismatched == [3, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("threshold_scale", [(1, 0.9), (1, 0.2)])
def test_fourier_filter_equals_diffusers_in_float32(threshold_scale):
    from diffusers.utils.torch_utils import fourier_filter

    g = torch.Generator().manual_seed(0)
    for shape in [(1, 8, 4, 4), (2, 5, 3, 3), (1, 3, 15, 15), (1, 2, 1, 1), (1, 4, 8, 6)]:
        x = torch.randn(shape, generator=g)
        assert torch.equal(
            F.fourier_filter(x, *threshold_scale), fourier_filter(x, *threshold_scale)
        )
