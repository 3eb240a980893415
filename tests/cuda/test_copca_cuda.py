"""The co-PCA on the GPU equals the CPU one where it matters: every source cell keeps its
nearest target cell, and the leading components (distinct eigenvalues) are the same, signs
included (the sign convention is part of co_pca_many).

Two kinds of input: maps of SD's shapes with a known spectrum (both the covariance path and
the Gram path, fewer rows than channels), and real MobileNetV2 features of a minireal pair
through :func:`corr.fusion.build_descriptors_many`, as :class:`corr.Matcher` calls it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cuda_helpers import photos, rel_err

import corr
from corr.fusion import build_descriptors_many, co_pca_many

pytestmark = pytest.mark.cuda

NN_AGREEMENT = 0.99  # share of source cells whose nearest target cell is the same
LEADING, LEADING_TOL = 16, 1e-3  # the first components: relative error
RANK, DIM = 32, 24  # signal rank of the synthetic maps; co-PCA dimension (a cut inside it)


def _maps(c: int, grid: int, seed: int) -> list[torch.Tensor]:
    """Two ``(c, grid, grid)`` maps in one ``RANK``-dimensional subspace whose variances fall by
    28 % from one component to the next (far apart, whatever the sampling), plus noise far
    below the ``DIM``-th: a well-posed PCA, so both devices must find the same components."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(c, RANK, generator=g))[0]
    scale = 10.0 * 0.85 ** torch.arange(RANK, dtype=torch.float32)[:, None]
    out = []
    for _ in range(2):
        coeff = torch.randn(RANK, grid * grid, generator=g) * scale
        x = basis @ coeff + 0.01 * torch.randn(c, grid * grid, generator=g)
        out.append(x.reshape(c, grid, grid))
    return out


def _nn(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Index of the nearest target cell (cosine) of every source cell."""
    s = F.normalize(src.flatten(1).double(), dim=0)
    t = F.normalize(tgt.flatten(1).double(), dim=0)
    return (s.T @ t).argmax(dim=1).cpu()


@pytest.mark.parametrize(
    "c,grid",
    [(1280, 15), (1280, 30), (640, 60)],  # the Gram path (450 rows < 1280), covariance paths
    ids=["sd-layer2-gram", "sd-layer5", "sd-layer8"],
)
def test_gpu_copca_equals_cpu_on_nearest_neighbours(cuda, c, grid):
    maps = _maps(c, grid, seed=c + grid)
    cpu = co_pca_many(maps, DIM)
    gpu = [m.cpu() for m in co_pca_many([m.to(cuda) for m in maps], DIM)]
    assert [m.shape for m in gpu] == [m.shape for m in cpu]
    agree = (_nn(*gpu) == _nn(*cpu)).double().mean().item()
    assert agree >= NN_AGREEMENT, agree
    for g, w in zip(gpu, cpu, strict=True):
        assert rel_err(g[:LEADING], w[:LEADING]) <= LEADING_TOL


@pytest.mark.usefixtures("real_mobilenet")
def test_gpu_copca_of_real_features_keeps_the_nearest_neighbours(cuda):
    """MobileNetV2 stages 6, 13, 18 (32 x 56², 96 x 28², 1280 x 14²: the last takes the Gram
    path, like SD layer 2 at 960 px), each co-PCA reduced to 64 as SD layers are; the maps
    computed once on the CPU, the descriptors built on each device from the same maps."""
    ext = corr.create_extractor("corr.contrib.mobilenet:mobilenetv2", stages=(6, 13, 18))
    ext.reduce = True  # co-PCA of every stage, as for SD layers
    m = corr.Matcher([ext], device="cpu")
    for src, tgt in [photos(4)[0:2], photos(4)[2:4]]:
        maps = [m.features(src).maps, m.features(tgt).maps]
        grid = max(v.shape[-1] for v in maps[0][0].values())
        kwargs = dict(reduce=[True], weights=[1.0], grid=grid, pca_dim=64)
        cpu = build_descriptors_many(maps, **kwargs)
        on_gpu = [[{k: v.to(cuda) for k, v in d.items()} for d in per] for per in maps]
        gpu = [d.cpu() for d in build_descriptors_many(on_gpu, **kwargs)]
        agree = (_nn(*gpu) == _nn(*cpu)).double().mean().item()
        assert agree >= NN_AGREEMENT, (src, tgt, agree)
