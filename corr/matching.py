"""Matching on feature grids: cosine nearest neighbour and window soft-argmax (docs/protocol.md §5).

Descriptors are ``(D, g, g)`` tensors on the output grid; queries and results are grid
coordinates ``(N, 2)`` as ``(x, y)`` cell indices (fractional for soft-argmax; cell ``p``'s
centre is ``p``). Similarities are cosine. Work is done in chunks of queries so that memory
stays bounded by ``chunk * g * g`` similarities whatever the grid size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .fusion import l2_normalize

METHODS = ("nn", "softargmax", "pixel")
WINDOW_MODES = ("exclude", "zero")


def _flat(desc: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    if desc.ndim != 3:
        raise ValueError(f"descriptors must be (D, h, w), got {tuple(desc.shape)}")
    return (desc if normalized else l2_normalize(desc)).reshape(desc.shape[0], -1)


def _window_offsets(radius: int, device) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)  # (W, 2) as (dx, dy)


def match_points(
    src: torch.Tensor,
    tgt: torch.Tensor,
    cells: torch.Tensor,
    method: str = "softargmax",
    window: int = 5,
    temperature: float = 0.02,
    target_mask: torch.Tensor | None = None,
    chunk: int = 2048,
    window_mode: str = "exclude",
    normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match source cells to the target grid.

    Args:
        src, tgt: ``(D, hs, ws)`` and ``(D, ht, wt)`` descriptors (normalised here).
        cells: ``(N, 2)`` integer source cells ``(x, y)``.
        method: ``"nn"`` (centre of the most similar target cell) or ``"softargmax"`` (soft-max
            with temperature ``temperature`` over the ``(2 window + 1)^2`` cells around the
            argmax; cells outside the window or the grid are excluded, not zeroed).
        target_mask: optional ``(ht, wt)`` bool; False cells are never matched (e.g. padding).
        chunk: queries per block; memory is ``O(chunk * ht * wt)``.
        window_mode: ``"exclude"`` (default) soft-maxes over the window's cells only;
            ``"zero"`` reproduces GeoAware-SC: similarities outside the window (window
            positions clamped to the grid) are set to 0 and the soft-max runs over the whole
            grid, so far cells keep a small weight (docs/protocol.md, "Parity knobs").
        normalized: ``src`` and ``tgt`` are already ``l2_normalize``-d (kept per image by the
            matcher, :mod:`corr.reuse`): used as they are.

    Returns:
        ``(N, 2)`` float target grid coordinates and ``(N,)`` confidence = the cosine similarity
        of the best target cell.
    """
    if method not in ("nn", "softargmax"):
        raise ValueError(f"match_points: method must be 'nn' or 'softargmax', got {method!r}")
    if window_mode not in WINDOW_MODES:
        raise ValueError(f"window_mode must be one of {WINDOW_MODES}, got {window_mode!r}")
    if method == "softargmax" and (window < 0 or temperature <= 0):
        raise ValueError(
            f"softargmax needs window >= 0 and temperature > 0, got {window}, {temperature}"
        )
    s, t = _flat(src, normalized), _flat(tgt, normalized)
    ht, wt = tgt.shape[-2:]
    ws = src.shape[-1]
    cells = torch.as_tensor(cells, dtype=torch.long, device=src.device).reshape(-1, 2)
    idx = cells[:, 1] * ws + cells[:, 0]
    mask = None
    if target_mask is not None:
        mask = torch.as_tensor(target_mask, dtype=torch.bool, device=src.device).reshape(-1)
        if not bool(mask.any()):
            raise ValueError("target_mask excludes every target cell")
    window = min(window, max(ht, wt))  # a larger window covers nothing more, only costs memory
    offsets = _window_offsets(window, src.device) if method == "softargmax" else None
    coords_out, conf_out = [], []
    for start in range(0, idx.numel(), chunk):
        q = s[:, idx[start : start + chunk]].T  # (n, D): index the rows first, then one matmul
        sim = q @ t  # (n, ht*wt)
        if mask is not None:
            sim = sim.masked_fill(~mask, float("-inf"))
        best, arg = sim.max(dim=1)
        cy, cx = arg // wt, arg % wt
        if method == "nn":
            coords = torch.stack([cx, cy], dim=1).float()
        elif window_mode == "zero":
            coords = _zeroed_window_softargmax(sim, cx, cy, offsets, ht, wt, temperature)
        else:
            px = cx[:, None] + offsets[None, :, 0]
            py = cy[:, None] + offsets[None, :, 1]
            inside = (px >= 0) & (px < wt) & (py >= 0) & (py < ht)
            flat = (py.clamp(0, ht - 1) * wt + px.clamp(0, wt - 1)).long()
            win = sim.gather(1, flat)
            win = win.masked_fill(~inside, float("-inf"))
            prob = torch.softmax(win / temperature, dim=1)
            coords = torch.stack([(prob * px).sum(1), (prob * py).sum(1)], dim=1)
        coords_out.append(coords)
        conf_out.append(best)
    if not coords_out:
        return torch.zeros(0, 2, device=src.device), torch.zeros(0, device=src.device)
    return torch.cat(coords_out), torch.cat(conf_out)


def _zeroed_window_softargmax(sim, cx, cy, offsets, ht, wt, temperature):
    """GeoAware-SC's window soft-argmax: keep the (clamped) window, zero the rest, soft-max all."""
    px = (cx[:, None] + offsets[None, :, 0]).clamp(0, wt - 1)
    py = (cy[:, None] + offsets[None, :, 1]).clamp(0, ht - 1)
    keep = torch.zeros_like(sim, dtype=torch.bool)
    keep.scatter_(1, (py * wt + px).long(), True)
    # padding cells excluded by a target mask stay at -inf; everything else outside the window is 0
    zeroed = torch.where(keep | torch.isinf(sim), sim, torch.zeros_like(sim))
    prob = torch.softmax(zeroed / temperature, dim=1).reshape(-1, ht, wt)
    xs = torch.arange(wt, device=sim.device, dtype=prob.dtype)
    ys = torch.arange(ht, device=sim.device, dtype=prob.dtype)
    return torch.stack([(prob.sum(1) * xs).sum(1), (prob.sum(2) * ys).sum(1)], dim=1)


def dense_match(
    src: torch.Tensor,
    tgt: torch.Tensor,
    method: str = "softargmax",
    window: int = 5,
    temperature: float = 0.02,
    target_mask: torch.Tensor | None = None,
    chunk: int = 2048,
    window_mode: str = "exclude",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match every source cell: ``(hs, ws, 2)`` target grid coordinates and ``(hs, ws)`` confidence."""
    hs, ws = src.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(hs), torch.arange(ws), indexing="ij")
    cells = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    coords, conf = match_points(
        src, tgt, cells, method, window, temperature, target_mask, chunk, window_mode
    )
    return coords.reshape(hs, ws, 2), conf.reshape(hs, ws)


def _upsample(desc: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(desc[None], size=size, mode="bilinear", align_corners=False)[0]


def pixel_match(
    src: torch.Tensor,
    tgt: torch.Tensor,
    points: torch.Tensor,
    src_size: tuple[int, int],
    tgt_size: tuple[int, int],
    channel_chunk: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DIFT's matching: both feature maps upsampled (bilinear) to their image's pixels, the
    source vector read at each integer source pixel, the most cosine-similar target pixel.

    Args:
        src, tgt: ``(D, hs, ws)`` / ``(D, ht, wt)`` feature maps covering the whole image.
        points: ``(N, 2)`` integer source pixels ``(x, y)``.
        src_size, tgt_size: ``(W, H)`` of the original images.
        channel_chunk: channels upsampled at a time; memory is ``O(chunk * H * W)``.

    Returns ``(N, 2)`` target pixels ``(x, y)`` (float, integral) and ``(N,)`` cosine similarity.
    Upsampling is linear, so ``q . up(F) = up(q . F)``: only the target's norm map needs the
    upsampled channels, accumulated chunk by chunk.
    """
    (ws, hs), (wt, ht) = src_size, tgt_size
    pts = torch.as_tensor(points, device=src.device).long().reshape(-1, 2)
    if pts.numel() and (
        (pts[:, 0] < 0).any()
        or (pts[:, 0] >= ws).any()
        or (pts[:, 1] < 0).any()
        or (pts[:, 1] >= hs).any()
    ):
        raise ValueError(f"pixel_match: source points must lie on the {ws}x{hs} image's pixels")
    d = src.shape[0]
    q = torch.empty(pts.shape[0], d, device=src.device, dtype=torch.float32)
    norm2 = torch.zeros(ht, wt, device=tgt.device, dtype=torch.float32)
    for c in range(0, d, channel_chunk):
        up_s = _upsample(src[c : c + channel_chunk].float(), (hs, ws))
        q[:, c : c + channel_chunk] = up_s[:, pts[:, 1], pts[:, 0]].T
        norm2 += _upsample(tgt[c : c + channel_chunk].float(), (ht, wt)).square().sum(0)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    coords, sims = [], []
    for start in range(0, q.shape[0], 16):
        maps = torch.einsum("nd,dhw->nhw", q[start : start + 16], tgt.float())
        cos = _upsample(maps, (ht, wt)) / norm2.sqrt().clamp_min(1e-12)
        best, arg = cos.reshape(cos.shape[0], -1).max(dim=1)
        coords.append(torch.stack([arg % wt, arg // wt], dim=1).float())
        sims.append(best)
    if not coords:
        return torch.zeros(0, 2, device=src.device), torch.zeros(0, device=src.device)
    return torch.cat(coords), torch.cat(sims)


def nearest_neighbours(
    a: torch.Tensor, b: torch.Tensor, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``a (N, D)`` -> index of the most cosine-similar row of ``b (M, D)`` and that similarity."""
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-8)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-8)
    idx, sims = [], []
    for start in range(0, a.shape[0], chunk):
        s, i = (a[start : start + chunk] @ b.T).max(dim=1)
        idx.append(i)
        sims.append(s)
    if not idx:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(idx), torch.cat(sims)


def mutual_nearest_neighbours(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """``(N,)`` bool: rows of ``a`` whose nearest neighbour in ``b`` has them as nearest neighbour."""
    ab, _ = nearest_neighbours(a, b, chunk)
    ba, _ = nearest_neighbours(b, a, chunk)
    return ba[ab] == torch.arange(a.shape[0], device=a.device)


def cosine_similarity_map(src: torch.Tensor, tgt: torch.Tensor, cell: Sequence[int]) -> np.ndarray:
    """Cosine similarity of source cell ``(x, y)`` of ``src (D, g, g)`` with every cell of
    ``tgt (D, h, w)``: an ``(h, w)`` array."""
    cx, cy = int(cell[0]), int(cell[1])
    q = src[:, cy, cx].float()
    t = tgt.float().reshape(tgt.shape[0], -1)
    sim = (q / q.norm().clamp_min(1e-8)) @ (t / t.norm(dim=0, keepdim=True).clamp_min(1e-8))
    return sim.reshape(tgt.shape[1], tgt.shape[2]).cpu().numpy()
