"""Descriptor construction: co-PCA, layer stacking and L2 fusion (docs/protocol.md §4).

Shapes: a feature map is ``(C, h, w)``; a descriptor is ``(D, g, g)`` on the output grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def co_pca(
    a: torch.Tensor,
    b: torch.Tensor,
    dim: int,
    seed: int = 0,
    method: str = "eigh",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project two maps ``(C, h, w)`` onto the top ``dim`` principal components of their joint stack.

    Rows of both maps are stacked (``h*w + h*w`` rows of ``C``), centred by their joint mean and
    projected onto the leading eigenvectors of the joint covariance. Returns the two projected
    maps ``(dim, h, w)`` (``dim`` is clipped to ``min(C, rows)``). ``method="eigh"`` is exact and
    deterministic; ``"lowrank"`` uses ``torch.pca_lowrank`` (randomised, as sd-dino) with a
    fixed ``seed``. The sign of each component is fixed (largest-magnitude loading positive), so
    results do not depend on the eigensolver's sign choice.

    ``dtype`` is the precision of the decomposition, on the maps' device: float32 by default
    (it keeps the nearest neighbour of every source cell of real features; see
    ``benchmarks/copca_precision.py``), float64 on request. With fewer rows than channels (SD
    layer 2 at 960 px: 450 rows of 1280) the ``rows x rows`` Gram matrix is decomposed instead
    of the ``C x C`` covariance: the same components, cheaper.

    This is :func:`co_pca_many` on ``[a, b]`` (bit for bit).
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"co_pca needs two (C, h, w) maps with equal C, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    pa, pb = co_pca_many([a, b], dim, seed=seed, method=method, dtype=dtype)
    return pa, pb


def co_pca_many(
    maps: Sequence[torch.Tensor],
    dim: int,
    seed: int = 0,
    method: str = "eigh",
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """:func:`co_pca` of any number of maps: one PCA fitted on the rows of all of them.

    ``maps``: ``N >= 1`` maps ``(C, h_i, w_i)`` with one ``C`` (grids may differ). Their
    ``sum h_i * w_i`` rows are stacked in order, centred by the joint mean and projected onto
    the leading ``dim`` components (clipped to ``min(C, rows)``) of the joint covariance (or
    Gram matrix when there are fewer rows than channels); ``method``, ``seed``, ``dtype`` and
    the sign convention are :func:`co_pca`'s. Returns one ``(dim, h_i, w_i)`` float32 map per
    input, in order. Projections of different images are comparable (one shared basis), which
    is what part co-segmentation (:func:`corr.cosegment`) relies on.
    """
    if not maps:
        raise ValueError("co_pca_many needs at least one (C, h, w) map")
    if any(m.ndim != 3 for m in maps) or len({m.shape[0] for m in maps}) != 1:
        raise ValueError(
            "co_pca_many needs (C, h, w) maps with one C, got "
            + ", ".join(str(tuple(m.shape)) for m in maps)
        )
    c = maps[0].shape[0]
    xs = [m.reshape(c, -1).T.to(dtype) for m in maps]
    x = torch.cat(xs, dim=0)
    x = x - x.mean(dim=0, keepdim=True)
    n = x.shape[0]
    k = min(dim, c, n)
    if method == "eigh":
        if n < c:  # Gram trick: X X^T = U S U^T, components V = X^T U / sqrt(S)
            vals, vecs = torch.linalg.eigh(x @ x.T)
            vals, vecs = vals[-k:].flip(0), vecs[:, -k:].flip(1)
            comps = (x.T @ vecs) / vals.clamp_min(torch.finfo(dtype).tiny).sqrt()
        else:
            cov = x.T @ x / max(n - 1, 1)
            _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
            comps = vecs[:, -k:].flip(1)
    elif method == "lowrank":
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            _, _, v = torch.pca_lowrank(x, q=k, center=False)
        finally:
            torch.random.set_rng_state(gen_state)
        comps = v[:, :k]
    else:
        raise ValueError(f"co_pca method must be 'eigh' or 'lowrank', got {method!r}")
    idx = comps.abs().argmax(dim=0)
    signs = torch.sign(comps[idx, torch.arange(k, device=comps.device)])
    signs[signs == 0] = 1
    comps = comps * signs
    proj = (x @ comps).float()
    out, start = [], 0
    for m, xm in zip(maps, xs, strict=True):
        rows = xm.shape[0]
        out.append(proj[start : start + rows].T.reshape(k, *m.shape[1:]).contiguous())
        start += rows
    return out


def stack_pyramid(
    maps: Sequence[torch.Tensor], grid: int | None = None, one_step: bool = False
) -> torch.Tensor:
    """Stack maps of different grid sizes into one ``(sum C, g, g)`` descriptor, finer first.

    Default (sd-dino's co-PCA path): start from the coarsest map, upsample (bilinear) to the next
    finer grid and concatenate *after* it, repeat; finally upsample to ``grid`` if given. E.g. SD
    layers 2/5/8 at 15/30/60 -> ``[L8 | up(L5 | up(L2))]`` on 60 x 60 (L2 goes 15 -> 30 -> 60).
    ``one_step=True`` (GeoAware-SC's raw concatenation) upsamples every map straight to the
    finest grid (or ``grid``): ``[L8 | up(L5) | up(L2)]``, L2 going 15 -> 60 in one step.
    """
    if not maps:
        raise ValueError("stack_pyramid needs at least one map")
    if one_step:
        finest = max(maps, key=lambda m: m.shape[-1])
        size = (grid, grid) if grid is not None else tuple(finest.shape[-2:])
        ordered = sorted(maps, key=lambda m: -m.shape[-1])
        return torch.cat(
            [m if tuple(m.shape[-2:]) == size else _resize(m, size) for m in ordered], dim=0
        )
    ordered = sorted(maps, key=lambda m: m.shape[-1])
    acc = ordered[0]
    for m in ordered[1:]:
        if acc.shape[-2:] != m.shape[-2:]:
            acc = _resize(acc, m.shape[-2:])
        acc = torch.cat([m, acc], dim=0)
    if grid is not None and acc.shape[-2:] != (grid, grid):
        acc = _resize(acc, (grid, grid))
    return acc


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def l2_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise a ``(D, h, w)`` descriptor to unit L2 norm at every location."""
    return x / x.norm(dim=0, keepdim=True).clamp_min(eps)


def fuse(groups: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """L2 fusion: normalise each ``(D_i, g, g)`` group per location, scale by its weight, concatenate.

    With two groups ``[SD, DINO]`` and ``weights = (alpha, 1 - alpha)`` this is docs/protocol.md §4.
    Groups with weight 0 are dropped (``alpha = 1`` is SD alone, ``alpha = 0`` DINO alone).
    """
    if len(groups) != len(weights):
        raise ValueError(f"{len(groups)} descriptor groups but {len(weights)} weights")
    # a weight of 1 leaves the normalised group as it is (x * 1.0 == x): no copy
    parts = [
        l2_normalize(g) if w == 1 else w * l2_normalize(g)
        for g, w in zip(groups, weights, strict=True)
        if w != 0
    ]
    if not parts:
        raise ValueError("all fusion weights are zero")
    shapes = {p.shape[-2:] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"groups must share one grid before fusion, got {sorted(shapes)}")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def fusion_weights(
    n_groups: int, alpha: float | None, weights: Sequence[float] | None
) -> list[float]:
    """Weights for ``n_groups``: explicit ``weights``, or ``(alpha, 1 - alpha)`` for two groups."""
    if weights is not None:
        if len(weights) != n_groups:
            raise ValueError(f"weights has {len(weights)} entries for {n_groups} extractor groups")
        return [float(w) for w in weights]
    if n_groups == 1:
        return [1.0]
    if n_groups == 2:
        a = 0.5 if alpha is None else float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"fuse (alpha) must lie in [0, 1], got {a}")
        return [a, 1.0 - a]
    return [1.0 / n_groups] * n_groups


def build_descriptors(
    src: Sequence[Mapping[str, torch.Tensor]],
    tgt: Sequence[Mapping[str, torch.Tensor]],
    reduce: Sequence[bool],
    weights: Sequence[float],
    grid: int,
    pca_dim: int | None = 256,
    mode: str = "copca",
    pca_method: str = "eigh",
    seed: int = 0,
    pca_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-extractor feature maps of a pair -> fused ``(D, grid, grid)`` descriptors of both images.

    ``src[i]`` / ``tgt[i]`` are extractor ``i``'s maps ``{name: (C, h, w)}``; ``reduce[i]`` says
    whether its maps are co-PCA reduced to ``pca_dim`` (``mode="copca"``, maps stacked in two
    upsampling steps as sd-dino); ``mode="concat"`` is GeoAware's raw variant (no PCA, maps
    upsampled in one step, each group normalised, the whole re-normalised). This is
    :func:`build_descriptors_many` on ``[src, tgt]`` (bit for bit).
    """
    for maps_s, maps_t in zip(src, tgt, strict=True):
        if sorted(maps_t) != sorted(maps_s):
            raise ValueError(f"source and target maps differ: {sorted(maps_s)} vs {sorted(maps_t)}")
    ds, dt = build_descriptors_many(
        [src, tgt],
        reduce,
        weights,
        grid,
        pca_dim=pca_dim,
        mode=mode,
        pca_method=pca_method,
        seed=seed,
        pca_dtype=pca_dtype,
    )
    return ds, dt


def build_descriptors_many(
    images: Sequence[Sequence[Mapping[str, torch.Tensor]]],
    reduce: Sequence[bool],
    weights: Sequence[float],
    grid: int,
    pca_dim: int | None = 256,
    mode: str = "copca",
    pca_method: str = "eigh",
    seed: int = 0,
    pca_dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """:func:`build_descriptors` of ``N >= 1`` images at once: co-PCA fitted on all of them.

    ``images[j][i]`` is image ``j``'s extractor-``i`` maps ``{name: (C, h, w)}`` (every image
    has the same extractors and map names). Each reduced map is projected by one
    :func:`co_pca_many` over the ``N`` images, so the descriptors of all images live in one
    space. Returns one fused ``(D, grid, grid)`` descriptor per image, in order.
    """
    if mode not in ("copca", "concat"):
        raise ValueError(f"fusion mode must be 'copca' or 'concat', got {mode!r}")
    if not images:
        raise ValueError("build_descriptors_many needs at least one image")
    n_ext = len(images[0])
    if any(len(per) != n_ext for per in images):
        raise ValueError(
            f"every image needs one map dict per extractor, got {[len(p) for p in images]}"
        )
    if len(reduce) != n_ext:
        raise ValueError(f"{n_ext} extractor map dicts but {len(reduce)} reduce flags")
    groups: list[list[torch.Tensor]] = [[] for _ in images]
    for e, red in enumerate(reduce):
        names = sorted(images[0][e])
        for j, per in enumerate(images):
            if sorted(per[e]) != names:
                raise ValueError(
                    f"image {j}'s maps of extractor {e} differ from image 0's: "
                    f"{sorted(per[e])} vs {names}"
                )
        projected: list[list[torch.Tensor]] = [[] for _ in images]
        for name in names:
            ms = [per[e][name] for per in images]
            if mode == "copca" and red and pca_dim:
                ms = co_pca_many(ms, pca_dim, seed=seed, method=pca_method, dtype=pca_dtype)
            for j, m in enumerate(ms):
                projected[j].append(m)
        one_step = mode == "concat"
        for j in range(len(images)):
            groups[j].append(stack_pyramid(projected[j], grid, one_step))
    out = [fuse(g, weights) for g in groups]
    if mode == "concat":
        out = [l2_normalize(d) for d in out]
    return out
