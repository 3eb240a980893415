"""Test-time pose alignment: try the source mirrored (docs/protocol.md §6).

The decision compares *instance matching distances* between source and target descriptors, for
the source as it is and for the source mirrored (features re-extracted on the mirrored image).
All functions are vectorised on the feature grid. :func:`instance_distance` is ours (content
cells only, masks pooled onto the feature grid); :func:`reference_mutual_distance` and
:func:`reference_masked_distance` reproduce GeoAware-SC's ``get_distance_mutual_nn`` and
``get_distance`` for the parity protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import Letterbox, content_mask, mirror_points
from .matching import nearest_neighbours

FLIP_DISTANCES = ("corr", "reference")


def instance_distance(
    src: torch.Tensor,
    tgt: torch.Tensor,
    src_valid: torch.Tensor,
    tgt_valid: torch.Tensor,
    mutual: bool = True,
) -> float:
    """Mean L2 distance of (unit-normalised) source descriptors to their nearest target descriptor.

    Args:
        src, tgt: ``(D, g, g)`` descriptors.
        src_valid, tgt_valid: ``(g, g)`` bool cells taking part (foreground masks, or the image
            content without padding).
        mutual: average only over source cells that are mutual nearest neighbours with a target
            cell (the maskless variant); otherwise over every valid source cell (with masks).

    Returns the mean distance (``nan`` when no cell qualifies).
    """
    d = src.shape[0]
    a = F.normalize(src.reshape(d, -1).T, dim=1)[src_valid.reshape(-1)]
    b = F.normalize(tgt.reshape(d, -1).T, dim=1)[tgt_valid.reshape(-1)]
    if a.shape[0] == 0 or b.shape[0] == 0:
        return float("nan")
    ab, sim = nearest_neighbours(a, b)
    dist = torch.sqrt((2.0 - 2.0 * sim).clamp_min(0.0))  # L2 between unit vectors
    if mutual:
        ba, _ = nearest_neighbours(b, a)  # a -> b is known: one more pass, not two
        keep = ba[ab] == torch.arange(a.shape[0], device=a.device)
        if not bool(keep.any()):
            return float("nan")
        dist = dist[keep]
    return float(dist.mean())


def _unit_rows(desc: torch.Tensor) -> torch.Tensor:
    d = desc.shape[0]
    return F.normalize(desc.reshape(d, -1).T.float(), dim=1)


def reference_mutual_distance(src: torch.Tensor, tgt: torch.Tensor) -> float:
    """GeoAware-SC's maskless distance: mean L2 distance of the mutual nearest neighbours.

    ``src``/``tgt`` ``(D, g, g)`` are unit-normalised per cell (the reference's descriptors are);
    *every* cell takes part, letterbox padding included, and ties go to the lowest index.
    """
    dist = torch.cdist(_unit_rows(src)[None], _unit_rows(tgt)[None])[0]
    best, ab = dist.min(dim=1)
    ba = dist.argmin(dim=0)
    mutual = ba[ab] == torch.arange(ab.numel(), device=ab.device)
    return float(best[mutual].mean()) if bool(mutual.any()) else float("nan")


def letterbox_mask(mask: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """An ``(H, W)`` mask in original pixels -> ``(T, T)`` float {0, 1} in the letterbox frame
    (nearest resize, zero padding), the frame the reference's masks live in."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != (letterbox.height, letterbox.width):
        raise ValueError(
            f"mask is {m.shape[1]}x{m.shape[0]} but its image is {letterbox.width}x{letterbox.height}"
        )
    rgb = np.repeat((m > 0).astype(np.uint8)[..., None] * 255, 3, axis=2)
    return (letterbox.apply(rgb, resample="nearest")[..., 0] > 127).astype(np.float32)


def reference_masked_distance(
    src: torch.Tensor,
    tgt: torch.Tensor,
    src_mask: np.ndarray | torch.Tensor,
    tgt_mask: np.ndarray | torch.Tensor,
    resolution: int = 64,
) -> float:
    """GeoAware-SC's masked distance (``get_distance``), computed without its Python loop.

    Both unit-normalised ``(D, g, g)`` descriptors are upsampled (bilinear) to
    ``resolution x resolution`` and multiplied by their letterbox-frame masks, themselves
    nearest-resized to that grid; every feature value that is then exactly 0 becomes -100000 (as
    the reference does); the result is the mean, over source foreground cells, of the L2
    distance to the nearest target cell (any cell: masked-out ones are far away).
    """
    d = src.shape[0]
    size = (resolution, resolution)

    def prepare(desc, mask):
        feat = F.interpolate(
            _unit_rows(desc).T.reshape(1, d, *desc.shape[-2:]), size=size, mode="bilinear"
        )[0]
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=feat.device)
        m = F.interpolate(m[None, None], size=size, mode="nearest")[0, 0]
        feat = feat * m[None]
        feat = torch.where(feat == 0, torch.full_like(feat, -100000.0), feat)
        return feat.reshape(d, -1).T, m.reshape(-1) == 1

    a, fg = prepare(src, src_mask)
    b, _ = prepare(tgt, tgt_mask)
    if not bool(fg.any()):
        return float("nan")
    best = torch.cdist(a[fg][None], b[None])[0].min(dim=1).values
    return float(best.mean())


def mask_to_grid(mask: np.ndarray, letterbox: Letterbox, grid: int) -> torch.Tensor:
    """An ``(H, W)`` mask in original pixels -> ``(grid, grid)`` bool (cell area mostly inside)."""
    boxed = letterbox_mask(mask, letterbox)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(boxed)[None, None], grid)[0, 0]
    return pooled > 0.5


def flip_permutation_from_pairs(pairs: Iterable[Sequence[int]], n: int) -> np.ndarray:
    """``(n,)`` permutation from left/right twin pairs ``[(i, j), ...]`` (others map to themselves)."""
    perm = np.arange(n)
    seen: set[int] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"flip_pairs entries must be (i, j) pairs, got {pair!r}")
        i, j = int(pair[0]), int(pair[1])
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"flip pair {pair!r} indexes outside the {n} points")
        if i in seen or j in seen:
            raise ValueError(f"point {i if i in seen else j} appears in two flip pairs")
        seen.update((i, j))
        perm[i], perm[j] = j, i
    return perm


def mirrored_source_wins(distance: float, distance_flipped: float) -> bool:
    """The flip decision (docs/protocol.md §6): the mirrored source wins when its instance
    distance is finite and lower than the plain one (or the plain one is not finite)."""
    return bool(
        np.isfinite(distance_flipped) and (not np.isfinite(distance) or distance_flipped < distance)
    )


def flipped_queries(points: np.ndarray, perm: np.ndarray, width: int) -> np.ndarray:
    """Queries in the mirrored source: keypoint ``i`` asks at the mirrored position of ``perm[i]``.

    ``points`` ``(K, 2)`` original source pixels (NaN rows for invisible keypoints); the mirror is
    ``x' = W - 1 - x`` (pixel-index convention, as the mirrored image array).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return mirror_points(pts[np.asarray(perm)], width)


def mirror_in_letterbox(points_lb: np.ndarray, size: int, arithmetic: str = "exact") -> np.ndarray:
    """Letterbox-frame points -> their mirror ``x' = T - x`` in the same frame (GeoAware-SC's
    ``flip_keypoints`` on keypoints already scaled to the ``T``-square); ``arithmetic="float32"``
    subtracts in float32 as the reference does."""
    pts = np.asarray(points_lb, dtype=np.float64).reshape(-1, 2).copy()
    if arithmetic == "float32":
        pts[:, 0] = (np.float32(size) - pts[:, 0].astype(np.float32)).astype(np.float64)
    else:
        pts[:, 0] = size - pts[:, 0]
    return pts


def replace_where_aligned(
    plain: np.ndarray,
    aligned: np.ndarray,
    src_visible: np.ndarray,
    perm: np.ndarray,
    tgt_visible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Use the aligned prediction of keypoint ``i`` only where ``i`` and its twin ``perm[i]`` are
    visible in the source and, when ``tgt_visible`` is given, in the target too (GeoAware-SC's
    ``vis_flip`` rule: the twin must be mutually visible, not only ``i``).

    Returns the merged ``(K, 2)`` predictions and the ``(K,)`` bool mask of replaced rows.
    """
    perm = np.asarray(perm)
    vis = np.asarray(src_visible, dtype=bool)
    if tgt_visible is not None:
        vis = vis & np.asarray(tgt_visible, dtype=bool)
    use = vis & vis[perm]
    out = np.where(use[:, None], aligned, plain)
    return out, use


def flip_distances(
    plain: tuple[torch.Tensor, torch.Tensor],
    flipped: tuple[torch.Tensor, torch.Tensor],
    src_frame: Letterbox,
    tgt_frame: Letterbox,
    rule: str = "corr",
    src_mask: np.ndarray | None = None,
    tgt_mask: np.ndarray | None = None,
) -> tuple[float, float]:
    """Instance distances of the plain and of the mirrored source to the target (§6).

    ``plain`` / ``flipped``: the ``(D, g, g)`` descriptors (source, target) of the pair and of
    the pair with the mirrored source (whose co-PCA is fitted with it); the frames are the
    matching frames of the source (the mirrored source has the same) and of the target.
    ``rule="corr"``: content cells only, masks pooled onto the grid (:func:`instance_distance`;
    mutual nearest neighbours without masks). ``rule="reference"``: GeoAware-SC's
    (:func:`reference_mutual_distance`, :func:`reference_masked_distance`). ``src_mask`` /
    ``tgt_mask``: ``(H, W)`` foreground masks in original pixels (both or neither).
    """
    if rule not in FLIP_DISTANCES:
        raise ValueError(f"flip_distance must be one of {FLIP_DISTANCES}, got {rule!r}")
    if (src_mask is None) != (tgt_mask is None):
        raise ValueError("give both src_mask and tgt_mask, or neither")
    ds, dt = plain
    dm, dt_m = flipped
    if rule == "reference":
        if src_mask is None:
            return reference_mutual_distance(ds, dt), reference_mutual_distance(dm, dt_m)
        src_fg = np.asarray(src_mask)
        m_s = letterbox_mask(src_fg, src_frame)
        m_m = letterbox_mask(np.ascontiguousarray(src_fg[:, ::-1]), src_frame)
        m_t = letterbox_mask(tgt_mask, tgt_frame)
        return (
            reference_masked_distance(ds, dt, m_s, m_t),
            reference_masked_distance(dm, dt_m, m_m, m_t),
        )
    grid = ds.shape[-1]
    sv = sv_m = torch.from_numpy(content_mask(src_frame, grid))
    tv = torch.from_numpy(content_mask(tgt_frame, grid))
    mutual = src_mask is None  # maskless: mutual nearest neighbours; masked: the foreground
    if src_mask is not None:
        src_fg = np.asarray(src_mask)
        sv_m = sv & mask_to_grid(src_fg[:, ::-1], src_frame, grid)
        sv = sv & mask_to_grid(src_fg, src_frame, grid)
        tv = tv & mask_to_grid(tgt_mask, tgt_frame, grid)
    dev = ds.device
    d_plain = instance_distance(ds, dt, sv.to(dev), tv.to(dev), mutual)
    d_flip = instance_distance(dm, dt_m, sv_m.to(dev), tv.to(dev), mutual)
    return d_plain, d_flip
