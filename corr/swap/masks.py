"""Instance masks of a swap: checking the ones a user gives, and finding them when none is.

:func:`check_mask` turns a user's mask (an ``(H, W)`` array, tensor or PIL image, or a box
``(x0, y0, x1, y1)``) into an ``(H, W)`` bool array of its image, refusing masks of another
size, boxes outside the image and masks that select nothing. :func:`cosegmentation_foreground`
finds both instances from the fused features with :func:`corr.cosegment` (a heuristic, stated
in its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..cosegmentation import cosegment
from ..dense import erode_cells
from ..io import ImageLike

if TYPE_CHECKING:  # pragma: no cover
    from ..matcher import Matcher

#: the border band of the co-segmentation rule, as a fraction of the grid side
BORDER = 0.1


def _box_mask(box: Sequence[float], width: int, height: int, name: str) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise ValueError(f"{name}: the box {list(box)} has a non-finite coordinate")
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"{name}: the box (x0, y0, x1, y1) = {[x0, y0, x1, y1]} is not a non-empty box "
            f"inside the {width}x{height} image (original pixels, 0 <= x0 < x1 <= {width}, "
            f"0 <= y0 < y1 <= {height})"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
    return mask


def check_mask(mask: Any, width: int, height: int, name: str = "mask") -> np.ndarray:
    """A user's instance mask -> ``(height, width)`` bool in original pixels of its image.

    ``mask``: an ``(H, W)`` (or ``(H, W, C)``, first channel) bool/integer array, tensor or
    PIL image (nonzero = instance), a float one in ``[0, 1]`` (``> 0.5`` = instance), or a box
    ``(x0, y0, x1, y1)`` in original pixels. Refused, with ``name`` in the message: another
    size than the image's, a box outside it, non-finite or out-of-range values, an empty
    mask.
    """
    if isinstance(mask, (tuple, list)) and len(mask) == 4 and np.ndim(mask) == 1:
        return _box_mask(mask, width, height, name)
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"))
    elif isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(
            f"{name} must be an (H, W) mask of its image or a box (x0, y0, x1, y1), got an "
            f"array of shape {np.shape(mask)}"
        )
    if m.shape != (height, width):
        raise ValueError(
            f"{name} is {m.shape[1]}x{m.shape[0]} (W x H) but its image is {width}x{height}: "
            "give a mask of the image's own size, in original pixels"
        )
    if m.dtype == bool:
        out = m.copy()
    elif np.issubdtype(m.dtype, np.floating):
        if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise ValueError(f"{name}: a float mask must hold values in [0, 1] (no NaN)")
        out = m > 0.5
    elif np.issubdtype(m.dtype, np.integer):
        out = m > 0
    else:
        raise ValueError(f"{name}: unsupported mask dtype {m.dtype} (use bool, integers or floats)")
    if not out.any():
        raise ValueError(f"{name} selects no pixel of its {width}x{height} image")
    return out


def one_blob(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a bool ``(H, W)`` mask, its holes filled (the
    regions of the rest that do not touch the image's edge). OpenCV's connected components."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.copy()
    blob = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    n, labels = cv2.connectedComponents((~blob).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return blob | ((labels > 0) & ~np.isin(labels, edge))


def cosegmentation_foreground(
    matcher: Matcher,
    src: ImageLike,
    tgt: ImageLike,
    category: str | None = None,
    n_parts: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Both instances' masks ``((H_s, W_s), (H_t, W_t))`` bool from the fused features.

    The two images are co-segmented into ``n_parts`` parts (:func:`corr.cosegment`, KMeans
    seeded by ``seed`` on the pair's jointly fused descriptors); a part is **foreground** when
    it appears in both images and lies on their border band (the content cells within
    ``BORDER`` x grid side of the image content's edge) less often than a part spread evenly
    would: a shared object away from the frame's edges, a background around it. Each image's
    mask is then the largest connected region of its foreground pixels, holes filled
    (:func:`one_blob`: one instance per photo). A heuristic (it fails when the instance fills
    the frame or touches its edges most): pass masks when it does. Refused when no part
    qualifies.
    """
    out = cosegment([src, tgt], n_parts, matcher=matcher, category=category, seed=seed)
    grids = out.grid_labels
    g = grids[0].shape[-1]
    r = max(1, round(BORDER * g))
    bands = [(gl >= 0) & ~erode_cells(gl >= 0, r) for gl in grids]
    labels = np.concatenate([gl.reshape(-1) for gl in grids])
    band = np.concatenate([b.reshape(-1) for b in bands])
    on = labels >= 0
    share = band[on].mean()  # the band's share of all content cells
    keep = []
    for k in range(out.n_parts):
        cells = labels == k
        in_both = all((gl == k).any() for gl in grids)
        if in_both and band[cells].mean() < share:
            keep.append(k)
    if not keep:
        raise ValueError(
            "co-segmentation found no part shared by both images away from their edges: pass "
            "mask_src and mask_tgt (instance masks or boxes (x0, y0, x1, y1))"
        )
    return one_blob(np.isin(out.labels[0], keep)), one_blob(np.isin(out.labels[1], keep))
