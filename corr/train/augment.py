"""GeoAware-SC's pose-variant pair augmentation and keypoint perturbation (keypoint side).

Reference: Junyi42/GeoAware-SC @99fd6b6.

- **Flip** (``utils/utils_geoware.py:flip_keypoints``): in the letterbox frame of size ``T``
  (``ANNO_SIZE`` 840) a keypoint ``(x, y)`` goes to ``(T - x, y)`` (not ``T - 1 - x``), and rows
  are permuted so each row keeps its semantic label: ``flipped[i] = kps[perm[i]]``.
- **Permutation** (``permute_indices(flip_list)``, no visibility): ``perm`` has length
  ``max id + 1`` of the table; a pair swaps, a longer group rotates forward, a bare id stays.
  That is :func:`corr.keypoint_tables.flip_permutation` at ``K = max id + 1``
  (:func:`flip_permutation_for`). ``calculate_loss`` then truncates both images' keypoints to
  ``len(perm)`` rows. The training tables are ``AP10K_FLIP`` and ``SPAIR_FLIP_TRN`` (bundled as
  ``ap10k_flip`` and ``spair_flip``, the latter written in SPair ids).
- **The three terms** (``utils/utils_losses.py:calculate_loss``), with ``k1'``/``k2'`` the flipped
  keypoints and ``d1'``/``d2'`` the descriptors of the mirrored images:
  source flip ``(k1', k2) on (d1', d2)``, double flip ``(k1', k2') on (d1', d2')``, self flip
  ``(k1', k1) on (d1', d1)``; each on its mutually visible rows (:func:`flip_views`).
- **Gaussian perturbation** (``GAUSSIAN_AUGMENT``, dense terms only): the flow target gets
  ``N(0, std^2)`` noise per coordinate with ``std = GAUSSIAN_AUGMENT * threshold / 2`` ("2 sigma
  within the threshold"), threshold in grid cells (:func:`flow_noise`).

Keypoints are ``(K, 3)`` float tensors ``(x, y, visible)`` in the letterbox frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..keypoint_tables import flip_permutation

__all__ = [
    "flip_permutation_for",
    "flip_keypoints",
    "flip_views",
    "FlipView",
    "flow_noise",
    "threshold_cells",
    "REFERENCE_GAUSSIAN_AUGMENT",
]

#: pck_train.py ``--GAUSSIAN_AUGMENT`` default 0.1
REFERENCE_GAUSSIAN_AUGMENT = 0.1


def flip_permutation_for(table_entries: Sequence[Sequence[int] | int]) -> np.ndarray:
    """``permute_indices(table)`` of the reference: ``(max id + 1,)`` int64 permutation.

    ``table_entries``: one category's flip table (``corr.keypoint_tables.load_groups(...)[cat]``
    or the raw list with bare ids).
    """
    groups = [
        [int(e)] if isinstance(e, int | np.integer) else [int(i) for i in e] for e in table_entries
    ]
    if not groups or not any(groups):
        raise ValueError("flip table is empty: no keypoint ids to permute")
    k = max(i for g in groups for i in g) + 1
    return flip_permutation(groups, k)


def flip_keypoints(kps: torch.Tensor, size: int, perm: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Keypoints ``(K, 3)`` of an image -> those of its mirror in the ``size`` frame.

    ``x -> size - x`` (the reference's letterbox mirror), then rows reordered by ``perm``
    (``out[i] = kps[perm[i]]``); the result has ``len(perm)`` rows (``perm`` may be shorter than
    ``K``: the reference drops the rows past the table's largest id).
    """
    if kps.ndim != 2 or kps.shape[1] < 3:
        raise ValueError(f"keypoints must be (K, 3) (x, y, visible), got {tuple(kps.shape)}")
    idx = torch.as_tensor(np.asarray(perm, dtype=np.int64), device=kps.device)
    if idx.numel() and int(idx.max()) >= kps.shape[0]:
        raise ValueError(
            f"flip permutation refers to keypoint {int(idx.max())} but there are only "
            f"{kps.shape[0]} rows; pad the keypoints (the reference pads to 30) or check the table"
        )
    out = kps.detach().clone()
    out[:, 0] = size - out[:, 0]
    return out[idx]


@dataclass
class FlipView:
    """One flip term: keypoints (visible rows only) of its two images and which descriptors
    they index: ``"src"``, ``"tgt"``, ``"src_flip"``, ``"tgt_flip"``; ``threshold`` says whose
    threshold scales its noise (``"src"`` or ``"tgt"``)."""

    name: str
    weight: float
    kps_a: torch.Tensor
    kps_b: torch.Tensor
    desc_a: str
    desc_b: str
    threshold: str


def flip_views(
    kps1: torch.Tensor,
    kps2: torch.Tensor,
    perm: Sequence[int] | np.ndarray,
    size: int,
    flip_weight: float,
    double_flip_weight: float,
    self_flip_weight: float,
) -> list[FlipView]:
    """The enabled flip terms of ``calculate_loss``, in the reference's order (source flip,
    double flip, self flip); a term with no mutually visible row is left out (and so is its
    weight), a term with weight 0 too."""
    p = len(perm)
    k1f = flip_keypoints(kps1, size, perm)
    k2f = flip_keypoints(kps2, size, perm)
    k1, k2 = kps1[:p], kps2[:p]
    spec = (
        ("flip", flip_weight, k1f, k2, "src_flip", "tgt", "tgt"),
        ("double_flip", double_flip_weight, k1f, k2f, "src_flip", "tgt_flip", "tgt"),
        ("self_flip", self_flip_weight, k1f, k1, "src_flip", "src", "src"),
    )
    views = []
    for name, w, a, b, da, db, thr in spec:
        if w <= 0:
            continue
        vis = (a[:, 2] * b[:, 2]) > 0
        if bool(vis.any()):
            views.append(FlipView(name, float(w), a[vis], b[vis], da, db, thr))
    return views


def threshold_cells(bbox_max_side: float, size: int, grid: int) -> float:
    """A keypoint-noise threshold in grid cells: the box's longer side (letterbox pixels) times
    ``grid / size``, as ``pck_train.py:train`` scales ``all_thresholds`` (``BBOX_THRE``).
    (With ``BBOX_THRE`` off, PF-Pascal, the reference passes ``ANNO_SIZE`` = 840 unscaled.)"""
    return float(bbox_max_side) * (grid / size)


def flow_noise(
    shape: tuple[int, ...] | torch.Size,
    threshold: float,
    gaussian_augment: float = REFERENCE_GAUSSIAN_AUGMENT,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Noise added to a flow target: ``randn(shape) * gaussian_augment * threshold / 2``.

    Drawn from ``generator`` (default: torch's global generator, as the reference's
    ``torch.randn_like``), float32.
    """
    std = gaussian_augment * threshold / 2
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device=device) * std
