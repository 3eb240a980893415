"""Whole-image answers of a :class:`~corr.pair.Pair`: the dense field, the warp, sparse matches.

Each function reads a pair's fused descriptors and matching frames and returns its result in
original pixels: :func:`dense_field` (every source cell, or every source pixel, matched),
:func:`warp_source` (the source resampled into the target's frame through the field of the
reversed pair) and :func:`sparse_matches` (mutual nearest neighbours on image content, for
geometry estimation) and :func:`shared_points` (source points worth matching, when none are
given). ``Pair.dense``, ``Pair.warp``, ``Pair.match_sparse`` and ``Pair.suggest_points`` call
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .alignment import mask_to_grid
from .geometry import clip_to_image, content_mask, grid_to_letterbox
from .io import load_image
from .matching import dense_match, mutual_nearest_neighbours, nearest_neighbours
from .outputs import DenseOutput, MatchOutput, WarpOutput

if TYPE_CHECKING:  # pragma: no cover
    from .pair import Pair

#: cv2.remap needs every side of both images below SHRT_MAX
REMAP_LIMIT = 32767


def _refuse_pixel_method(pair: Pair, what: str) -> None:
    if pair.matcher.method == "pixel":
        raise ValueError(
            f"{what}: use method 'nn' or 'softargmax' (the 'pixel' "
            "method matches given points at the images' own resolution)"
        )


def target_cells(pair: Pair, tgt_mask: np.ndarray) -> torch.Tensor:
    """``(g, g)`` bool: the target cells mostly inside ``tgt_mask`` (``(H_t, W_t)`` original
    target pixels; :func:`corr.alignment.mask_to_grid`) and on image content. Refused with a
    clear error when no cell is: the region is too small for the feature grid."""
    _, dt = pair.descriptors
    (_, ft), (_, lb_t) = pair.features, pair.frames
    g = dt.shape[-1]
    mask = np.asarray(tgt_mask)
    if mask.shape[:2] != (ft.height, ft.width):
        raise ValueError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{ft.width}x{ft.height}: give an (H, W) mask of that image"
        )
    cells = mask_to_grid(mask, lb_t, g) & torch.from_numpy(content_mask(lb_t, g))
    if not bool(cells.any()):
        raise ValueError(
            f"the mask ({int((mask > 0).sum())} pixels) covers no {g}x{g} feature-grid cell "
            f"by more than half (a cell is {pair.matcher.frame / g:.1f} px of the "
            f"{pair.matcher.frame}-px matching frame): the region is too small for the "
            "feature resolution; use a larger region or a closer crop"
        )
    return cells


def dense_field(
    pair: Pair, upsample: bool = False, tgt_mask: np.ndarray | None = None
) -> DenseOutput:
    """Every source cell (``upsample=True``: every source pixel) of ``pair`` matched: the
    :class:`~corr.outputs.DenseOutput` that :meth:`Pair.dense <corr.pair.Pair.dense>` documents.
    ``tgt_mask`` (``(H_t, W_t)`` bool, original target pixels): matches land only on the
    target cells :func:`target_cells` keeps."""
    _refuse_pixel_method(pair, "dense() matches grid cells")
    m = pair.matcher
    ds, dt = pair.descriptors
    (fs, ft), (lb_s, lb_t) = pair.features, pair.frames
    g = ds.shape[-1]
    allowed = pair.target_mask()
    if tgt_mask is not None:
        cells = target_cells(pair, tgt_mask)
        allowed = cells if allowed is None else allowed & cells
    with torch.no_grad():
        coords, conf = dense_match(
            ds, dt, m.method, m.window, m.temperature, allowed, window_mode=m.window_mode
        )
    coords1 = lb_t.from_letterbox(
        grid_to_letterbox(coords.reshape(-1, 2).cpu().numpy(), m.frame, g, m.centre_shift)
    )
    if m.exclude_padding:
        coords1 = clip_to_image(coords1, ft.width, ft.height)
    coords1 = coords1.reshape(g, g, 2)
    confidence = np.clip(conf.cpu().numpy().astype(np.float64), -1.0, 1.0)
    valid = content_mask(lb_s, g)
    if upsample:
        xx, yy = np.meshgrid(np.arange(fs.width), np.arange(fs.height))
        points0 = np.stack([xx, yy], -1).astype(np.float64)
        # each source pixel's position on the grid, as grid_sample's [-1, 1] (cell centres at
        # (i + 0.5) / g): x_lb / frame * 2 - 1
        lb = lb_s.to_letterbox(points0.reshape(-1, 2), arithmetic="exact")
        where = torch.from_numpy(lb / m.frame * 2 - 1).float().view(1, fs.height, -1, 2)
        maps = torch.from_numpy(
            np.concatenate([coords1, confidence[..., None]], -1).transpose(2, 0, 1).copy()
        ).float()[None]
        up = F.grid_sample(maps, where, mode="bilinear", padding_mode="border", align_corners=False)
        coords1 = up[0, :2].permute(1, 2, 0).double().numpy()
        confidence = up[0, 2].double().numpy()
        mask = torch.from_numpy(valid.astype(np.float32))[None, None]
        near = F.grid_sample(
            mask, where, mode="nearest", padding_mode="border", align_corners=False
        )
        valid = near[0, 0].numpy() > 0.5
    else:
        yy, xx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        points0 = lb_s.from_letterbox(
            grid_to_letterbox(np.stack([xx.ravel(), yy.ravel()], 1), m.frame, g)
        ).reshape(g, g, 2)
    return DenseOutput(
        points0=points0, coords1=coords1, flow=coords1 - points0, confidence=confidence, valid=valid
    )


def warp_source(
    pair: Pair, min_confidence: float | None = None, src_mask: np.ndarray | None = None
) -> WarpOutput:
    """``pair``'s source warped into its target's frame through the reversed pair's
    upsampled field (``cv2.remap``): the :class:`~corr.outputs.WarpOutput` that
    :meth:`Pair.warp <corr.pair.Pair.warp>` documents. ``src_mask`` (``(H_s, W_s)`` bool,
    original source pixels): every target pixel samples the source only inside it (its match
    restricted to the source cells mostly inside the mask, and a point that the interpolation
    between cell centres puts outside the mask moved to the nearest mask pixel:
    :func:`snap_into_mask`)."""
    _refuse_pixel_method(pair, "warp() uses the dense correspondence of grid cells")
    try:
        import cv2
    except ImportError as err:
        raise ImportError(
            'Matcher.warp needs OpenCV: pip install "semcorr[warp]" '
            "(or pip install opencv-python-headless)"
        ) from err
    m = pair.matcher
    src_px = load_image(pair.src, name="src", exif_transpose=m.exif_transpose)
    tgt_px = load_image(pair.tgt, name="tgt", exif_transpose=m.exif_transpose)
    if max(*src_px.shape[:2], *tgt_px.shape[:2]) >= REMAP_LIMIT:
        raise ValueError(
            f"warp(): cv2.remap needs both images' sides below {REMAP_LIMIT} pixels, got source "
            f"{src_px.shape[1]}x{src_px.shape[0]} and target "
            f"{tgt_px.shape[1]}x{tgt_px.shape[0]}; downscale them first"
        )
    # target pixel -> source point
    d = dense_field(pair.reversed(), upsample=True, tgt_mask=src_mask)
    coords = np.asarray(d.coords1, dtype=np.float64)
    confidence = np.asarray(d.confidence, dtype=np.float64)
    h_s, w_s = src_px.shape[:2]
    if src_mask is not None:
        coords = snap_into_mask(coords, src_mask)
    x, y = coords[..., 0], coords[..., 1]
    valid = d.valid & (x >= 0) & (x <= w_s - 1) & (y >= 0) & (y <= h_s - 1)
    if min_confidence is not None:
        valid &= confidence >= min_confidence
    warped = cv2.remap(
        np.ascontiguousarray(src_px),
        x.astype(np.float32),
        y.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    warped[~valid] = 0
    return WarpOutput(warped=warped, valid=valid, coords=coords, confidence=confidence)


def snap_into_mask(coords: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``coords`` (``(..., 2)`` points ``(x, y)`` in the pixels of ``mask``'s image) with every
    point whose nearest pixel lies outside ``mask`` (``(H, W)``, nonzero = inside; or off the
    image) moved to the nearest pixel inside it (Euclidean, OpenCV's 5x5 distance transform,
    within 0.2 px of the exact nearest). A copy; float64."""
    import cv2

    inside = np.asarray(mask)
    inside = (inside[..., 0] if inside.ndim == 3 else inside) > 0
    h, w = inside.shape
    out = np.array(coords, dtype=np.float64)
    if not inside.any():
        raise ValueError("snap_into_mask: the mask selects no pixel")
    xi = np.clip(np.rint(out[..., 0]), -1, w).astype(np.int64)
    yi = np.clip(np.rint(out[..., 1]), -1, h).astype(np.int64)
    on = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    move = ~on
    move[on] = ~inside[yi[on], xi[on]]
    if move.any():
        # labels of DIST_LABEL_PIXEL number the mask's pixels 1.. in raster order
        _, nearest = cv2.distanceTransformWithLabels(
            (~inside).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        ys, xs = np.nonzero(inside)
        k = nearest[np.clip(yi[move], 0, h - 1), np.clip(xi[move], 0, w - 1)] - 1
        out[move] = np.stack([xs[k], ys[k]], -1)
    return out


def sparse_matches(
    pair: Pair,
    mutual: bool = True,
    max_matches: int | None = None,
    min_confidence: float | None = None,
) -> MatchOutput:
    """Nearest-neighbour (``mutual``: mutual) matches between the content cells of ``pair``'s
    images, most similar first: the :class:`~corr.outputs.MatchOutput` that
    :meth:`Pair.match_sparse <corr.pair.Pair.match_sparse>` documents."""
    if max_matches is not None and max_matches < 1:
        raise ValueError(f"max_matches must be a positive number, got {max_matches}")
    frame = pair.matcher.frame
    ds, dt = pair.descriptors
    (fs, ft), (lb_s, lb_t) = pair.features, pair.frames
    g = ds.shape[-1]
    cells_s = np.flatnonzero(content_mask(lb_s, g).reshape(-1))
    cells_t = np.flatnonzero(content_mask(lb_t, g).reshape(-1))
    with torch.no_grad():
        a = ds.reshape(ds.shape[0], -1).T[torch.from_numpy(cells_s).to(ds.device)]
        b = dt.reshape(dt.shape[0], -1).T[torch.from_numpy(cells_t).to(dt.device)]
        nn_idx, sim = nearest_neighbours(a, b)
        keep = (
            mutual_nearest_neighbours(a, b)
            if mutual
            else torch.ones(len(a), dtype=torch.bool, device=a.device)
        )
    if min_confidence is not None:
        keep &= sim >= min_confidence
    rows = torch.nonzero(keep).reshape(-1)
    rows = rows[torch.argsort(-sim[rows], stable=True)]
    if max_matches is not None:
        rows = rows[:max_matches]
    src_cells = cells_s[rows.cpu().numpy()]
    tgt_cells = cells_t[nn_idx[rows].cpu().numpy()]

    def centres(cells: np.ndarray, lb) -> np.ndarray:
        xy = np.stack([cells % g, cells // g], 1)
        return lb.from_letterbox(grid_to_letterbox(xy, frame, g)).reshape(-1, 2)

    return MatchOutput(
        keypoints0=clip_to_image(centres(src_cells, lb_s), fs.width, fs.height),
        keypoints1=clip_to_image(centres(tgt_cells, lb_t), ft.width, ft.height),
        confidence=np.clip(sim[rows].cpu().numpy().astype(np.float64), -1.0, 1.0),
    )


def erode_cells(mask: np.ndarray, r: int) -> np.ndarray:
    """Shrink a bool grid mask by ``r`` cells (cells within ``r`` of a False cell or the edge)."""
    out = mask.copy()
    h, w = mask.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    padded[r : r + h, r : r + w] = mask
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= padded[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def _most_distinctive(rows: torch.Tensor, keep: float) -> torch.Tensor:
    """Bool mask of the rows (unit vectors) farthest from their mean direction: the most
    distinctive ``keep`` fraction, a cheap foreground proxy (the background usually covers most
    of a photo, so the mean feature looks like background)."""
    mean = rows.mean(0)
    dist = 1 - rows @ (mean / mean.norm().clamp_min(1e-8))
    k = max(1, int(round(keep * len(rows))))
    thresh = torch.topk(dist, k).values[-1]
    return dist >= thresh


def shared_points(
    pair: Pair, n: int = 24, border: float = 0.05, keep: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` source points likely to lie on the object the two photos share.

    There is no segmenter, so foreground is approximated on the pair's fused descriptors:

    1. candidate cells: image content only, minus a margin of ``border`` x grid cells along
       the image edges (edge cells of two photos look alike to the networks, which see the
       padding there);
    2. of those, the ``keep`` fraction (a quarter) of each image whose descriptors are
       farthest from that image's mean descriptor (the background usually dominates a photo,
       so the mean looks like background);
    3. source cells that are **mutual nearest neighbours** with a target candidate, ranked by
       cosine similarity, spread by greedy non-maximum suppression (at least 8% of the grid
       apart); if fewer than ``n`` survive, the most similar non-mutual candidates fill up.

    A heuristic: with the MobileNetV2 stand-in on minireal's 37 non-mirror pairs, 43% of the
    chosen points fall inside the source's annotated box, against 29% for points spread
    uniformly. Returns the points (cell centres, original source pixels, ``(K, 2)``) and a
    ``(K,)`` bool array saying which came from mutual matches.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ds, dt = pair.descriptors
    (fs, _), (lb_s, lb_t) = pair.features, pair.frames
    g = ds.shape[-1]
    margin = max(1, round(border * g))
    ms = torch.from_numpy(erode_cells(content_mask(lb_s, g), margin)).reshape(-1)
    mt = torch.from_numpy(erode_cells(content_mask(lb_t, g), margin)).reshape(-1)
    if int(ms.sum()) < 2 or int(mt.sum()) < 2:  # tiny grids: all content cells
        ms = torch.from_numpy(content_mask(lb_s, g)).reshape(-1)
        mt = torch.from_numpy(content_mask(lb_t, g)).reshape(-1)
    with torch.no_grad():
        a = ds.reshape(ds.shape[0], -1).T.cpu()
        b = dt.reshape(dt.shape[0], -1).T.cpu()
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-8)
        b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-8)
        cells_s = torch.nonzero(ms).reshape(-1)
        cells_t = torch.nonzero(mt).reshape(-1)
        cells_s = cells_s[_most_distinctive(a[cells_s], keep)]
        cells_t = cells_t[_most_distinctive(b[cells_t], keep)]
        _, sim = nearest_neighbours(a[cells_s], b[cells_t])
        mutual = mutual_nearest_neighbours(a[cells_s], b[cells_t]).numpy()
    sim = sim.numpy()
    cells = cells_s.numpy()
    xy = np.stack([cells % g, cells // g], axis=1)
    radius = max(1.0, 0.08 * g)
    chosen: list[int] = []
    for pool in (np.flatnonzero(mutual), np.flatnonzero(~mutual)):
        for i in pool[np.argsort(-sim[pool], kind="stable")]:
            if len(chosen) >= n:
                break
            if all(np.hypot(*(xy[i] - xy[j])) >= radius for j in chosen):
                chosen.append(int(i))
    idx = np.asarray(chosen, dtype=np.int64)
    pts = lb_s.from_letterbox(grid_to_letterbox(xy[idx], pair.matcher.frame, g))
    return clip_to_image(pts, fs.width, fs.height), mutual[idx]
