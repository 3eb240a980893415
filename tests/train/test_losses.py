"""Training losses: keypoint cells, CLIP loss, the soft-argmax flow head, pair_loss's switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corr.adapters import AdapterConfig, AggregationNetwork, normalize_descriptor
from corr.train import (
    RECIPES,
    Recipe,
    SoftArgmaxFlow,
    clip_loss,
    flip_permutation_for,
    keypoint_positions,
    pair_loss,
)

G = 12


def onehot_desc(grid: int = G) -> torch.Tensor:
    """Orthonormal descriptors: one axis per cell, ``(g*g, g*g)``."""
    return torch.eye(grid * grid)


def test_keypoint_positions_float32_and_clipped():
    kps = torch.tensor([[0.0, 0.0, 1], [69.9, 140.0, 1], [840.0, 839.9, 1]])
    pos, idx = keypoint_positions(kps, 840, 60)
    want = np.float32(60 / 840) * kps[:, :2].numpy()
    assert pos.dtype == torch.float32 and np.array_equal(pos.numpy(), want)
    # 69.9 -> 4.99 -> cell 4; 140 -> 10.0 -> 10; x = 840 (a mirrored x = 0) clipped to cell 59
    assert idx.tolist() == [0, 10 * 60 + 4, 59 * 60 + 59]


def test_clip_loss_prefers_the_right_pairs_and_checks_shapes():
    f = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    right = clip_loss(f, f, torch.tensor(100.0))
    shuffled = clip_loss(f, f.roll(1, dims=0), torch.tensor(100.0))
    assert right < 1e-3 < shuffled
    with pytest.raises(ValueError, match="N >= 1"):
        clip_loss(f[:0], f[:0], 1.0)
    with pytest.raises(ValueError, match=r"\(6, 8\) and \(5, 8\)"):
        clip_loss(f, f[:5], 1.0)


@pytest.mark.parametrize("window", [0, 2, -3])
def test_flow_head_recovers_a_known_shift(window):
    """Target = source shifted by (+2, -1) cells: the peaked soft-argmax returns that flow."""
    d = onehot_desc()
    cells = torch.arange(G * G).view(G, G)
    # target cell (y, x) holds source cell (y + 1, x - 2): source (y, x) is found at (y - 1, x + 2)
    shifted = torch.zeros_like(d)
    for y in range(G):
        for x in range(G):
            sy, sx = y + 1, x - 2
            if 0 <= sy < G and 0 <= sx < G:
                shifted[cells[y, x]] = d[cells[sy, sx]]
    src = cells[3:8, 2:6].reshape(-1)  # cells whose match exists
    flow = SoftArgmaxFlow(grid=G, window=window)(d, shifted, src)
    torch.testing.assert_close(flow, torch.tensor([[2.0, -1.0]]).expand_as(flow), atol=1e-4, rtol=0)


def test_flow_head_accepts_maps_and_checks_the_grid():
    d = onehot_desc().T.reshape(G * G, G, G)  # (D, g, g)
    flow = SoftArgmaxFlow(grid=G)(d, d, torch.tensor([0, 5, 77]))
    torch.testing.assert_close(flow, torch.zeros(3, 2), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="12 x 12 grid, got 64 and 64 cells"):
        SoftArgmaxFlow(grid=G)(torch.eye(64), torch.eye(64), torch.tensor([0]))
    assert not SoftArgmaxFlow(grid=G, learn_grid=False).x_normal.requires_grad


def pair(seed=0, grid=G, dim=16):
    g = torch.Generator().manual_seed(seed)
    ds = [
        torch.nn.functional.normalize(torch.randn(grid * grid, dim, generator=g), dim=-1)
        for _ in range(4)
    ]
    kps1 = torch.tensor([[100.0, 200.0, 1], [400.5, 300.0, 1], [700.0, 650.0, 1], [20.0, 30.0, 0]])
    kps2 = torch.tensor([[150.0, 250.0, 1], [380.0, 320.5, 1], [90.0, 50.0, 0], [500.0, 500.0, 1]])
    return ds, kps1, kps2


def test_baseline_recipe_is_the_sparse_loss_alone():
    (d1, d2, _, _), k1, k2 = pair()
    scale = torch.tensor(2.0)
    got = pair_loss(d1, d2, k1, k2, scale, recipe=RECIPES["sd-dino-s"])
    _, i1 = keypoint_positions(k1[:2], 840, G)
    _, i2 = keypoint_positions(k2[:2], 840, G)
    assert torch.equal(got, clip_loss(d1[i1], d2[i2], scale.exp()))


def test_pair_loss_gradients_reach_the_adapter_and_the_grid():
    torch.manual_seed(0)
    net = AggregationNetwork(
        AdapterConfig(feature_dims=(8, 8), group_names=None, projection_dim=128)
    )
    x = torch.randn(4, 16, G, G)
    d = normalize_descriptor(net(x))  # src, tgt, mirrored src, mirrored tgt
    _, k1, k2 = pair()
    flow = SoftArgmaxFlow(grid=G)
    perm = flip_permutation_for([[0, 1], 2, 3])
    loss = pair_loss(
        d[0],
        d[1],
        k1,
        k2,
        net.logit_scale,
        flow=flow,
        threshold1=3.0,
        threshold2=2.5,
        flip_perm=perm,
        desc1_flip=d[2],
        desc2_flip=d[3],
        recipe=Recipe(),
    )
    loss.backward()
    assert net.logit_scale.grad is not None and net.mixing_weights.grad is not None
    assert flow.x_normal.grad.abs().sum() > 0 and flow.y_normal.grad.abs().sum() > 0


def test_seeded_noise_is_reproducible_with_a_generator():
    (d1, d2, d1f, d2f), k1, k2 = pair()
    args = dict(
        flow=SoftArgmaxFlow(grid=G),
        threshold1=3.0,
        threshold2=2.5,
        flip_perm=flip_permutation_for([[0, 1], 2, 3]),
        desc1_flip=d1f,
        desc2_flip=d2f,
    )
    a = pair_loss(
        d1, d2, k1, k2, torch.tensor(1.0), generator=torch.Generator().manual_seed(1), **args
    )
    b = pair_loss(
        d1, d2, k1, k2, torch.tensor(1.0), generator=torch.Generator().manual_seed(1), **args
    )
    c = pair_loss(
        d1, d2, k1, k2, torch.tensor(1.0), generator=torch.Generator().manual_seed(2), **args
    )
    quiet = pair_loss(
        d1, d2, k1, k2, torch.tensor(1.0), recipe=Recipe(gaussian_augment=0.0), **args
    )
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, quiet)


def test_pair_loss_refuses_missing_inputs():
    (d1, d2, d1f, d2f), k1, k2 = pair()
    s = torch.tensor(1.0)
    with pytest.raises(ValueError, match="dense head"):
        pair_loss(d1, d2, k1, k2, s)
    with pytest.raises(ValueError, match="threshold1 and threshold2"):
        pair_loss(d1, d2, k1, k2, s, flow=SoftArgmaxFlow(grid=G))
    with pytest.raises(ValueError, match="flip_perm, desc1_flip and desc2_flip"):
        pair_loss(d1, d2, k1, k2, s, flow=SoftArgmaxFlow(grid=G), threshold1=1.0, threshold2=1.0)
    none = k2.clone()
    none[:, 2] = 0
    with pytest.raises(ValueError, match="no keypoint is visible in both"):
        pair_loss(d1, d2, k1, none, s, recipe=RECIPES["sd-dino-s"])
