"""GeoAware-SC's training objectives: sparse CLIP loss, dense soft-argmax flow loss, and the
per-pair composition with the flip terms.

Reference: Junyi42/GeoAware-SC @99fd6b6, ``utils/utils_losses.py`` (``cal_clip_loss``,
``get_corr_map_loss``, ``calculate_patch_indices_and_loss``, ``calculate_loss``) and
``model_utils/corr_map_model.py:Correlation2Displacement``.

Frames: keypoints ``(K, 3)`` ``(x, y, visible)`` in the letterbox frame of size ``T`` (840);
descriptors ``(g*g, D)`` unit rows, cell ``y * g + x`` (a ``(D, g, g)`` map is accepted too).
A keypoint's continuous grid position is ``float32(g / T) * x`` (float32, as the reference's
numpy arithmetic: cell ``p`` spans ``[p, p + 1)``); its cell is that truncated.

- **Sparse** (``cal_clip_loss``): the mutually visible keypoints' descriptors ``f1``, ``f2``
  ``(N, D)``; ``s = exp(logit_scale)`` (the adapter's learned scale);
  ``(CE(s f1 f2^T, arange N) + CE(s f2 f1^T, arange N)) / 2``.
- **Dense** (``DENSE_OBJ``, ``get_corr_map_loss``): similarities of each source keypoint's cell
  to all target cells, ``softmax((c - max c) / 0.02)`` over targets (optionally windowed), the
  expectation of the target coordinates ``x_normal`` / ``y_normal`` (``linspace(-1, 1, g)``)
  mapped back by ``(e + 1) (g - 1) / 2``, minus the source cell's index: the predicted flow in
  cells. The target flow is the *continuous* position difference (sub-cell), optionally with
  Gaussian noise; the loss is the mean Euclidean error (EPE). ``x_normal`` and ``y_normal`` are
  ``nn.Parameter`` s in the reference, trained by AdamW with the adapter (they are never saved):
  :class:`SoftArgmaxFlow` keeps them trainable by default (``learn_grid``).
- **Per pair** (``calculate_loss``): main term = sparse (+ dense if ``DENSE_OBJ``); each enabled
  flip term (:func:`corr.train.augment.flip_views`) = dense only if ``DENSE_OBJ``, else sparse
  only; total = ``(main + sum w_i term_i) / (1 + sum w_i)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import flip_views, flow_noise
from .recipe import ANNO_SIZE, Recipe

__all__ = [
    "clip_loss",
    "keypoint_positions",
    "SoftArgmaxFlow",
    "flow_loss",
    "pair_loss",
    "as_cells",
    "REFERENCE_SOFT_ARGMAX_BETA",
]

#: corr_map_model.py:Correlation2Displacement.soft_argmax ``beta=0.02``
REFERENCE_SOFT_ARGMAX_BETA = 0.02


def as_cells(desc: torch.Tensor) -> torch.Tensor:
    """``(g*g, D)`` descriptors as they are; a ``(D, g, g)`` map becomes ``(g*g, D)``."""
    if desc.ndim == 3:
        return desc.reshape(desc.shape[0], -1).T
    if desc.ndim == 2:
        return desc
    raise ValueError(f"descriptors must be (cells, D) or (D, g, g), got {tuple(desc.shape)}")


def _grid_of(desc: torch.Tensor) -> int:
    g = math.isqrt(desc.shape[0])
    if g * g != desc.shape[0]:
        raise ValueError(f"descriptors have {desc.shape[0]} cells, not a square grid")
    return g


def keypoint_positions(
    kps: torch.Tensor, size: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints ``(N, >=2)`` in the ``size`` frame -> ``(positions (N, 2) float32 (x, y) in
    cells, cell index (N,) int64 = y_cell * grid + x_cell)``.

    ``position = float32(grid / size) * float32(x)`` and ``cell = int(position)``, as
    ``calculate_loss.get_patch_idx``. Unlike the reference, the integer cell is clipped to the
    grid (a point at ``x = size``, e.g. ``x = 0`` mirrored, would otherwise index the next row).
    """
    pts = kps[:, :2].detach().to("cpu", torch.float32).numpy()
    pos = np.float32(grid / size) * pts  # float32, as numpy with a python-float factor
    cell = np.clip(pos.astype(np.int32), 0, grid - 1).astype(np.int64)
    idx = grid * cell[:, 1] + cell[:, 0]
    return torch.from_numpy(pos).to(kps.device), torch.from_numpy(idx).to(kps.device)


def clip_loss(f1: torch.Tensor, f2: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric cross-entropy: row ``i`` of ``f1`` ``(N, D)`` matches row ``i`` of ``f2``.

    ``scale`` multiplies the logits: pass ``adapter.logit_scale.exp()`` (the reference's
    ``aggre_net.logit_scale.exp()``).
    """
    if f1.ndim != 2 or f1.shape != f2.shape or f1.shape[0] == 0:
        raise ValueError(
            f"clip_loss needs two (N, D) feature sets with N >= 1, got {tuple(f1.shape)} and "
            f"{tuple(f2.shape)}"
        )
    logits_12 = scale * f1 @ f2.T
    logits_21 = scale * f2 @ f1.T
    labels = torch.arange(f1.shape[0], device=f1.device, dtype=torch.long)
    return (F.cross_entropy(logits_12, labels) + F.cross_entropy(logits_21, labels)) / 2


class SoftArgmaxFlow(nn.Module):
    """The dense objective's flow head (reference ``Correlation2Displacement``), on a ``g`` grid.

    ``forward(desc1, desc2, cells)`` -> the predicted flow ``(N, 2)`` (dx, dy in cells) of the
    source cells ``cells`` ``(N,)``. ``window`` > 0 zeroes the similarities outside the
    ``(2w + 1)^2`` cells around each row's argmax (clamped to the grid), < 0 multiplies them by a
    Gaussian of sigma ``-window`` around it (``SOFT_TRAIN_WINDOW``); ``beta`` is the softmax
    temperature. ``x_normal`` / ``y_normal`` (``linspace(-1, 1, g)``) are parameters, trainable
    when ``learn_grid`` (the reference's behaviour). Only the queried rows are computed; the
    reference computes all ``g^2`` and indexes them (same values and gradients).
    """

    def __init__(
        self,
        grid: int = 60,
        window: int = 0,
        beta: float = REFERENCE_SOFT_ARGMAX_BETA,
        learn_grid: bool = True,
    ) -> None:
        super().__init__()
        if grid < 2:
            raise ValueError(f"SoftArgmaxFlow grid must be >= 2, got {grid}")
        if beta <= 0:
            raise ValueError(f"SoftArgmaxFlow beta must be positive, got {beta}")
        self.grid, self.window, self.beta = int(grid), int(window), float(beta)
        lin = torch.tensor(np.linspace(-1, 1, grid), dtype=torch.float)
        self.x_normal = nn.Parameter(lin.clone(), requires_grad=learn_grid)
        self.y_normal = nn.Parameter(lin.clone(), requires_grad=learn_grid)

    def forward(
        self, desc1: torch.Tensor, desc2: torch.Tensor, cells: torch.Tensor
    ) -> torch.Tensor:
        d1, d2 = as_cells(desc1), as_cells(desc2)
        g = self.grid
        if d1.shape[0] != g * g or d2.shape[0] != g * g:
            raise ValueError(
                f"SoftArgmaxFlow is built for a {g} x {g} grid, got {d1.shape[0]} and "
                f"{d2.shape[0]} cells"
            )
        corr = d1[cells] @ d2.T  # (N, g*g): source rows, target columns
        if self.window != 0:
            corr = corr * self._window_weights(corr)
        m = corr.max(dim=1, keepdim=True)[0]
        e = torch.exp((corr - m) / self.beta)
        prob = (e / e.sum(dim=1, keepdim=True)).view(-1, g, g)  # (N, target y, target x)
        ex = (prob.sum(dim=1) * self.x_normal).sum(dim=1)
        ey = (prob.sum(dim=2) * self.y_normal).sum(dim=1)
        tx = (ex + 1) * (g - 1) / 2.0
        ty = (ey + 1) * (g - 1) / 2.0
        src_x = (cells % g).to(tx.dtype)
        src_y = torch.div(cells, g, rounding_mode="floor").to(ty.dtype)
        return torch.stack([tx - src_x, ty - src_y], dim=-1)

    def _window_weights(self, corr: torch.Tensor) -> torch.Tensor:
        g = self.grid
        arg = corr.argmax(dim=1)
        ax, ay = arg % g, torch.div(arg, g, rounding_mode="floor")
        coords = torch.arange(g, device=corr.device)
        if self.window > 0:
            w = self.window
            # the reference sets the clamped window positions to 1: a clamped interval
            inx = (coords[None] >= (ax[:, None] - w).clamp(0, g - 1)) & (
                coords[None] <= (ax[:, None] + w).clamp(0, g - 1)
            )
            iny = (coords[None] >= (ay[:, None] - w).clamp(0, g - 1)) & (
                coords[None] <= (ay[:, None] + w).clamp(0, g - 1)
            )
            mask = iny[:, :, None] & inx[:, None, :]
            return mask.reshape(corr.shape).to(corr.dtype)
        sigma = -self.window
        c = coords.to(corr.dtype)
        dx2 = (c[None] - ax[:, None].to(corr.dtype)) ** 2
        dy2 = (c[None] - ay[:, None].to(corr.dtype)) ** 2
        kernel = torch.exp(-(dy2[:, :, None] + dx2[:, None, :]) / (2 * sigma**2))
        return kernel.reshape(corr.shape)


def flow_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean end-point error ``mean ||pred - target||_2`` of flows ``(N, 2)``."""
    return torch.norm(pred - target, dim=-1).mean()


def _term(
    kps_a: torch.Tensor,
    kps_b: torch.Tensor,
    desc_a: torch.Tensor,
    desc_b: torch.Tensor,
    scale: torch.Tensor,
    flow: SoftArgmaxFlow | None,
    threshold: float,
    gaussian_augment: float,
    size: int,
    generator: torch.Generator | None,
    sparse: bool,
) -> torch.Tensor:
    """``calculate_patch_indices_and_loss`` (``sparse``: the main term's CLIP part)."""
    g = _grid_of(desc_a)
    pa, ia = keypoint_positions(kps_a, size, g)
    pb, ib = keypoint_positions(kps_b, size, g)
    if sparse:
        return clip_loss(desc_a[ia], desc_b[ib], scale)
    assert flow is not None
    target = (pb - pa).to(desc_a.device)
    if gaussian_augment > 0:
        target = target + flow_noise(
            target.shape, threshold, gaussian_augment, generator, device=target.device
        )
    return flow_loss(flow(desc_a, desc_b, ia), target)


def pair_loss(
    desc1: torch.Tensor,
    desc2: torch.Tensor,
    kps1: torch.Tensor,
    kps2: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    flow: SoftArgmaxFlow | None = None,
    threshold1: float | None = None,
    threshold2: float | None = None,
    flip_perm: np.ndarray | None = None,
    desc1_flip: torch.Tensor | None = None,
    desc2_flip: torch.Tensor | None = None,
    recipe: Recipe | None = None,
    size: int = ANNO_SIZE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One training pair's loss, as ``calculate_loss`` (see the module docstring).

    Args:
        desc1, desc2: unit descriptors of source and target, ``(g*g, D)`` or ``(D, g, g)``.
        kps1, kps2: ``(K, 3)`` keypoints in the ``size`` frame, row ``i`` the same semantic
            keypoint in both; visibility in column 2.
        logit_scale: the adapter's ``logit_scale`` parameter (its ``exp`` scales the logits).
        flow: the dense head, required when ``recipe.dense_obj``.
        threshold1, threshold2: the noise thresholds of source / target in grid cells
            (:func:`corr.train.augment.threshold_cells`); required with Gaussian augmentation.
        flip_perm: the flip permutation (:func:`corr.train.augment.flip_permutation_for`),
            and ``desc1_flip`` / ``desc2_flip`` the descriptors of the *mirrored* images;
            required when a flip weight is positive.
        recipe: the switches (default: the SPair recipe).
        generator: source of the Gaussian noise (default torch's global one, as the reference).

    Raises ValueError when no keypoint is visible in both images (the reference's loss would
    be NaN) or a required argument is missing.
    """
    recipe = recipe if recipe is not None else Recipe()
    d1, d2 = as_cells(desc1), as_cells(desc2)
    if recipe.dense_obj and flow is None:
        raise ValueError("pair_loss: recipe.dense_obj needs the dense head (flow=SoftArgmaxFlow)")
    noisy = recipe.dense_obj and recipe.gaussian_augment > 0
    if noisy and (threshold1 is None or threshold2 is None):
        raise ValueError("pair_loss: Gaussian augmentation needs threshold1 and threshold2")
    vis = (kps1[:, 2] * kps2[:, 2]).bool()
    if not bool(vis.any()):
        raise ValueError("pair_loss: no keypoint is visible in both images of the pair")
    scale = logit_scale.exp()
    common = dict(scale=scale, flow=flow, gaussian_augment=recipe.gaussian_augment, size=size)
    loss = _term(
        kps1[vis],
        kps2[vis],
        d1,
        d2,
        threshold=threshold2 or 0.0,
        generator=None,
        sparse=True,
        **common,
    )
    if recipe.dense_obj:
        loss = loss + _term(
            kps1[vis],
            kps2[vis],
            d1,
            d2,
            threshold=threshold2 or 0.0,
            generator=generator,
            sparse=False,
            **common,
        )
    if not recipe.pair_augment:
        return loss
    if flip_perm is None or desc1_flip is None or desc2_flip is None:
        raise ValueError(
            "pair_loss: the recipe's flip terms need flip_perm, desc1_flip and desc2_flip"
        )
    descs = {
        "src": d1,
        "tgt": d2,
        "src_flip": as_cells(desc1_flip),
        "tgt_flip": as_cells(desc2_flip),
    }
    thresholds = {"src": threshold1 or 0.0, "tgt": threshold2 or 0.0}
    losses, weights = [loss], [1.0]
    for view in flip_views(
        kps1,
        kps2,
        flip_perm,
        size,
        recipe.flip_weight,
        recipe.double_flip_weight,
        recipe.self_flip_weight,
    ):
        losses.append(
            _term(
                view.kps_a,
                view.kps_b,
                descs[view.desc_a],
                descs[view.desc_b],
                threshold=thresholds[view.threshold],
                generator=generator,
                sparse=not recipe.dense_obj,
                **common,
            )
        )
        weights.append(view.weight)
    return sum(lo * w for lo, w in zip(losses, weights, strict=True)) / sum(weights)
