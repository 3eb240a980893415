"""ModuleExtractor: tensor, list and dict outputs, normalisation, and the errors it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import corr
from corr.extractors import ModuleExtractor


class TwoMaps(nn.Module):
    """Pixel samples every 4 px (channels 0-1) and a constant coarse map of 3s, 8 px cells."""

    def __init__(self, as_list: bool = False) -> None:
        super().__init__()
        self.as_list = as_list

    def forward(self, x):
        fine = x[:, :2, ::4, ::4]
        b, _, h, w = x.shape
        coarse = torch.full((b, 1, h // 8, w // 8), 3.0)
        return [fine, coarse] if self.as_list else {"fine": fine, "coarse": coarse}


def test_tensor_list_and_dict_outputs_are_named():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    single = ModuleExtractor(lambda t: t[:, :1] * 2, input_size=16)(x)
    assert list(single) == ["feat"] and torch.equal(single["feat"], x[:, :1] * 2)
    listed = ModuleExtractor(TwoMaps(as_list=True), input_size=16)(x)
    assert list(listed) == ["feat0", "feat1"]  # in the module's order
    assert torch.equal(listed["feat0"], x[:, :2, ::4, ::4])
    assert torch.equal(listed["feat1"], torch.full((2, 1, 2, 2), 3.0))
    named = ModuleExtractor(TwoMaps(), input_size=16)(x)
    assert list(named) == ["fine", "coarse"]
    assert torch.equal(named["fine"], listed["feat0"])
    tupled = ModuleExtractor(lambda t: (t[:, :1], t[:, 1:]), input_size=16)(x)
    assert list(tupled) == ["feat0", "feat1"] and torch.equal(tupled["feat1"], x[:, 1:])


def test_mean_and_std_normalise_the_pixels_first():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ext = ModuleExtractor(nn.Identity(), input_size=8, mean=(0.5, 0.25, 0.0), std=(0.5, 2.0, 4.0))
    got = ext(x)["feat"]
    want = torch.stack([(x[0, 0] - 0.5) / 0.5, (x[0, 1] - 0.25) / 2.0, x[0, 2] / 4.0])[None]
    torch.testing.assert_close(got, want)
    assert ext.config()["mean"] == [0.5, 0.25, 0.0] and ext.config()["std"] == [0.5, 2.0, 4.0]


def test_bad_outputs_and_arguments_are_named():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match="net: the module returned int, expected tensor"):
        ModuleExtractor(lambda t: 3, input_size=8, name="net")(x)
    with pytest.raises(ValueError, match=r"net: output 'feat' must be a \(B, C, h, w\) tensor"):
        ModuleExtractor(lambda t: t[0], input_size=8, name="net")(x)  # (3, 8, 8)
    with pytest.raises(ValueError, match=r"output 'feat1' must be a \(B, C, h, w\) tensor"):
        ModuleExtractor(lambda t: [t, "not a tensor"], input_size=8)(x)
    with pytest.raises(ValueError, match=r"output 'b' must be"):
        ModuleExtractor(lambda t: {"a": t, "b": t.mean()}, input_size=8)(x)
    with pytest.raises(ValueError, match="give both mean and std"):
        ModuleExtractor(nn.Identity(), input_size=8, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="input_size must be positive"):
        ModuleExtractor(nn.Identity(), input_size=0)


@pytest.mark.parametrize("as_list", [False, True])
def test_several_maps_of_one_module_are_stacked_finest_first(as_list):
    """Through the Matcher: a 16 x 16 map and an 8 x 8 one become one descriptor on the finest
    grid, the finer map first, the whole L2-normalised. A 64 x 64 image letterboxes onto itself,
    so the expected descriptor is written down from the pixels: cell (x, y) holds
    (R, G, 3) of pixel (4x, 4y), divided by its norm (a constant map stays constant when
    upsampled)."""
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    m = corr.Matcher([ModuleExtractor(TwoMaps(as_list), input_size=64)], device="cpu")
    f = m.features(img)
    ds, dt = m.descriptors(f, f)
    assert ds.shape == (3, 16, 16)
    px = torch.from_numpy(img[::4, ::4, :2].astype(np.float64) / 255).permute(2, 0, 1)
    want = torch.cat([px, torch.full((1, 16, 16), 3.0, dtype=torch.float64)])
    want = want / want.norm(dim=0, keepdim=True)
    # the features pass through the fp16 feature cache: 1e-3 relative
    torch.testing.assert_close(ds.double(), want, atol=2e-3, rtol=0)
    torch.testing.assert_close(dt, ds)
