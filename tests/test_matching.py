import math

import pytest
import torch

from corr.matching import dense_match, match_points, mutual_nearest_neighbours


def _planted(g=12, d=16, seed=0):
    """Random unit descriptors where target cell perm(p) carries source cell p's descriptor."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(d, g, g, generator=gen)
    shift = (3, -2)  # target = source rolled by (dy, dx)
    tgt = torch.roll(src, shifts=shift, dims=(1, 2))
    return src, tgt, shift


def test_nn_recovers_planted_features():
    src, tgt, (dy, dx) = _planted()
    g = src.shape[-1]
    cells = torch.tensor([[x, y] for y in range(g) for x in range(g)])
    coords, conf = match_points(src, tgt, cells, method="nn")
    expected = torch.stack([(cells[:, 0] + dx) % g, (cells[:, 1] + dy) % g], 1).float()
    assert torch.equal(coords, expected)
    assert torch.allclose(conf, torch.ones_like(conf), atol=1e-5)


def test_softargmax_recovers_a_known_subcell_peak():
    # similarity field = a smooth bump centred at a sub-cell position (7.3, 4.6)
    g, cx, cy = 16, 7.3, 4.6
    ys, xs = torch.meshgrid(torch.arange(g).float(), torch.arange(g).float(), indexing="ij")
    # unit descriptors whose cosine with the query decays with distance from (cx, cy)
    ang = 0.15 * torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    tgt = torch.stack([torch.cos(ang), torch.sin(ang)])
    src = torch.zeros(2, 1, 1)
    src[0] = 1.0
    coords, _ = match_points(
        src, tgt, torch.tensor([[0, 0]]), method="softargmax", window=5, temperature=0.02
    )
    assert coords[0, 0].item() == pytest.approx(cx, abs=0.15)
    assert coords[0, 1].item() == pytest.approx(cy, abs=0.15)
    nn, _ = match_points(src, tgt, torch.tensor([[0, 0]]), method="nn")
    assert nn[0].tolist() == [7.0, 5.0]


def test_softargmax_excludes_cells_outside_window_and_grid():
    # the peak sits in a corner: the window is cut by the grid edge; out-of-grid cells must not
    # pull the estimate (zeroed cells at e^0 weight would drag it towards the centre of the window)
    g = 8
    tgt = torch.zeros(2, g, g)
    tgt[1] = 1.0
    tgt[0, 0, 0], tgt[1, 0, 0] = 1.0, 0.0  # the one matching cell at (0, 0)
    src = torch.tensor([1.0, 0.0]).view(2, 1, 1)
    coords, _ = match_points(src, tgt, torch.tensor([[0, 0]]), window=2, temperature=1.0)
    # inside-window cells: (0..2) x (0..2) = 9 cells, one with cosine 1, eight with cosine 0
    w1, w0 = math.exp(1.0), 1.0
    expect = (w0 * (0 + 1 + 2) * 3 - 0 * w0 + 0) / (w1 + 8 * w0)
    assert coords[0, 0].item() == pytest.approx(expect, abs=1e-5)
    assert coords[0, 1].item() == pytest.approx(expect, abs=1e-5)


def test_target_mask_and_chunking_do_not_change_results():
    src, tgt, _ = _planted(g=10, seed=1)
    cells = torch.randint(0, 10, (37, 2), generator=torch.Generator().manual_seed(0))
    a, ca = match_points(src, tgt, cells, chunk=5)
    b, cb = match_points(src, tgt, cells, chunk=1000)
    assert torch.allclose(a, b) and torch.allclose(ca, cb)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:, :5] = True
    m, _ = match_points(src, tgt, cells, method="nn", target_mask=mask)
    assert (m[:, 0] < 5).all()
    with pytest.raises(ValueError, match="every target cell"):
        match_points(src, tgt, cells, target_mask=torch.zeros(10, 10, dtype=torch.bool))


def test_dense_and_mutual():
    src, tgt, (dy, dx) = _planted(g=6)
    flow, conf = dense_match(src, tgt, method="nn")
    assert flow.shape == (6, 6, 2) and conf.shape == (6, 6)
    assert flow[0, 0].tolist() == [dx % 6, dy % 6]
    a = src.reshape(16, -1).T
    b = tgt.reshape(16, -1).T
    assert mutual_nearest_neighbours(a, b).all()


def test_a_huge_window_is_the_whole_grid_and_costs_no_more():
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(8, 6, 6, generator=g), torch.randn(8, 6, 6, generator=g)
    cells = torch.tensor([[0, 0], [5, 5], [2, 3]])
    whole, _ = match_points(src, tgt, cells, "softargmax", 6)
    huge, _ = match_points(src, tgt, cells, "softargmax", 100_000)  # would be 4e10 offsets
    assert torch.equal(whole, huge)
