"""Part co-segmentation: cluster the fused features of several images jointly into parts.

:func:`cosegment` builds the :class:`~corr.matcher.Matcher`'s fused descriptors of ``N``
images with *one* co-PCA over all of them (:func:`corr.fusion.build_descriptors_many`), so
every image's cells live in one space, and clusters the cells that lie on image content with
scikit-learn's ``KMeans`` (seeded). A cluster is a part: the same label means the same part in
every image. Label maps come back on the feature grid (``(g, g)``, the letterbox frame's grid)
and in original image pixels (``(H_i, W_i)``, each pixel takes the label of the grid cell that
contains its centre).

The descriptors are L2-normalised per cell before clustering, so the squared Euclidean
distance KMeans minimises is ``2 - 2 cos``: it groups cells by cosine similarity, as matching
does (an approximation of spherical k-means: the centres themselves are not re-normalised).

Needs scikit-learn: ``pip install "semcorr[coseg]"``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .alignment import mask_to_grid
from .fusion import l2_normalize
from .geometry import content_mask, make_frame
from .io import ImageLike, load_image
from .outputs import BaseOutput

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .matcher import Matcher

logger = logging.getLogger(__name__)

__all__ = ["CosegOutput", "cosegment", "plot_cosegmentation"]


@dataclass
class CosegOutput(BaseOutput):
    """Parts shared by a set of images (a dataclass that also reads like a dict).

    - ``labels``: one ``(H_i, W_i)`` int64 array per image, in original image pixels: the part
      ``0 .. n_parts - 1`` of the grid cell that contains the pixel's centre; ``-1`` only
      with ``foreground``: outside the mask, and inside it where that cell was left out (every
      pixel is image content, so without ``foreground`` no pixel is ``-1``);
    - ``grid_labels``: one ``(g, g)`` int64 array per image on the feature grid of the matching
      frame (letterbox square): the cell's part, ``-1`` on cells not on image content
      (letterbox padding) or outside the foreground;
    - ``centres``: ``(n_parts, D)`` float32 cluster centres in the L2-normalised descriptor
      space;
    - ``n_parts``; ``counts``: ``(n_parts,)`` cells per part over all images (parts are
      numbered by decreasing count, ties by KMeans' order); ``inertia``: KMeans' within-cluster
      sum of squares on the cells it was fitted on;
    - ``figure``: the path of the saved figure, when ``figure=`` was given.
    """

    labels: list[np.ndarray]
    grid_labels: list[np.ndarray]
    centres: np.ndarray
    n_parts: int
    counts: np.ndarray
    inertia: float
    figure: Path | None = None


def _kmeans_class():
    try:
        from sklearn.cluster import KMeans
    except ImportError as err:  # an optional dependency
        raise ImportError(
            'corr.cosegment needs scikit-learn: pip install "semcorr[coseg]" '
            "(or pip install scikit-learn)"
        ) from err
    return KMeans


def _pixel_cells(frame, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid row of every image row and grid column of every image column ``((H,), (W,))``.

    Pixel ``(x, y)`` is taken at its centre ``(x + 0.5, y + 0.5)``, mapped into the matching
    frame, and falls in cell ``floor(X * g / T)`` (both frames map x and y independently).
    """
    w, h, t = frame.width, frame.height, frame.size
    xs = np.stack([np.arange(w) + 0.5, np.zeros(w)], 1)
    ys = np.stack([np.zeros(h), np.arange(h) + 0.5], 1)
    cx = np.floor(frame.to_letterbox(xs)[:, 0] * grid / t).astype(np.int64)
    cy = np.floor(frame.to_letterbox(ys)[:, 1] * grid / t).astype(np.int64)
    return np.clip(cy, 0, grid - 1), np.clip(cx, 0, grid - 1)


def cosegment(
    images: Sequence[ImageLike],
    n_parts: int = 8,
    *,
    matcher: Matcher | None = None,
    category: str | Sequence[str | None] | None = None,
    seed: int = 0,
    foreground: Sequence[np.ndarray | None] | None = None,
    figure: str | os.PathLike | None = None,
    max_cells: int | None = None,
    n_init: int = 4,
    **matcher_options: Any,
) -> CosegOutput:
    """Co-segment ``images`` (``N >= 2`` of one category) into ``n_parts`` parts shared by all.

    Args:
        images: paths, PIL images, ``(H, W, 3)`` arrays or ``(3, H, W)`` tensors.
        n_parts: number of parts (KMeans clusters), at least 2.
        matcher: a :class:`~corr.matcher.Matcher` to use (its extractors, feature cache and
            fusion settings: ``pca_dim``, ``fusion``, weights, ``pca_method``, its ``seed`` for
            the co-PCA). Without one, ``Matcher(**matcher_options)`` is built for this call
            (pass a matcher to keep the models loaded between calls).
        category: the ``{category}`` prompt of SD extractors: one for all images or one each.
        seed: KMeans' ``random_state`` (and of the ``max_cells`` subsample): same seed, same
            labels.
        foreground: optional ``(H_i, W_i)`` masks (or ``None`` for an image without one):
            only cells mostly inside the mask (more than half of their area) are clustered;
            the other cells, the pixels outside the mask and the mask pixels in a left-out
            cell are ``-1``.
        figure: save a figure there (PNG, or any matplotlib format by suffix; atomic): one
            panel per image with its parts overlaid, one colour per part in every image.
        max_cells: fit KMeans on at most this many cells (a seeded random subsample of all
            images' cells), then label every cell with the nearest centre. ``None``: all cells.
        n_init: KMeans restarts (the best inertia is kept).
        matcher_options: keyword arguments of :class:`~corr.matcher.Matcher` when no
            ``matcher`` is given (e.g. ``extractors=``, ``pca_dim=``, ``device=``).

    Returns a :class:`CosegOutput`.
    """
    images = list(images)
    n = len(images)
    if n < 2:
        raise ValueError(f"cosegment needs at least 2 images, got {n}")
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 2:
        raise ValueError(f"n_parts must be an integer >= 2, got {n_parts!r}")
    n_parts = int(n_parts)
    if max_cells is not None and max_cells < n_parts:
        raise ValueError(f"max_cells ({max_cells}) must be at least n_parts ({n_parts})")
    if n_init < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init}")
    if category is None or isinstance(category, str):
        categories: list[str | None] = [category] * n
    else:
        categories = list(category)
        if len(categories) != n:
            raise ValueError(f"{n} images but {len(categories)} categories")
    if foreground is not None and len(foreground) != n:
        raise ValueError(f"{n} images but {len(foreground)} foreground masks")
    KMeans = _kmeans_class()  # fail before any model is loaded
    if matcher is None:
        from .matcher import Matcher

        matcher = Matcher(**matcher_options)
    elif matcher_options:
        raise TypeError(
            "give either a matcher or Matcher options, not both; got options "
            + ", ".join(sorted(matcher_options))
        )

    feats = [
        matcher.features(im, cat, name=f"images[{i}]")
        for i, (im, cat) in enumerate(zip(images, categories, strict=True))
    ]
    with torch.no_grad():
        descs = matcher.descriptors_many(feats)
    grid = descs[0].shape[-1]
    frames = [make_frame(f.width, f.height, matcher.frame, matcher.resize) for f in feats]
    keeps = []
    for i, (f, frame) in enumerate(zip(feats, frames, strict=True)):
        keep = content_mask(frame, grid)
        fg = None if foreground is None else foreground[i]
        if fg is not None:
            fg = np.asarray(fg)
            if fg.shape[:2] != (f.height, f.width):
                raise ValueError(
                    f"foreground[{i}] is {fg.shape[1]}x{fg.shape[0]} but images[{i}] is "
                    f"{f.width}x{f.height}"
                )
            keep = keep & mask_to_grid(fg, frame, grid).numpy()
        keeps.append(keep)
    rows = [
        l2_normalize(d).reshape(d.shape[0], -1).T[torch.from_numpy(k.reshape(-1)).to(d.device)]
        for d, k in zip(descs, keeps, strict=True)
    ]
    x = torch.cat(rows).float().cpu().numpy()
    pool = np.arange(len(x))
    if len(pool) < n_parts:
        raise ValueError(
            f"n_parts ({n_parts}) exceeds the {len(pool)} grid cells to cluster "
            f"({n} images, {grid}x{grid} grid{', foreground only' if foreground else ''})"
        )
    if max_cells is not None and len(pool) > max_cells:
        pick = np.random.default_rng(seed).choice(len(pool), size=max_cells, replace=False)
        pool = np.sort(pick)
    km = KMeans(n_clusters=n_parts, random_state=seed, n_init=n_init).fit(x[pool])
    flat = km.labels_ if len(pool) == len(x) else km.predict(x)
    # number the parts by decreasing size (stable): part 0 is the largest
    counts = np.bincount(flat, minlength=n_parts)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(n_parts, dtype=np.int64)
    rank[order] = np.arange(n_parts)
    flat = rank[flat]
    logger.debug("cosegment: %d cells of %d images in %d parts", len(x), n, n_parts)

    grid_labels, labels, start = [], [], 0
    for i, (frame, keep) in enumerate(zip(frames, keeps, strict=True)):
        gl = np.full(grid * grid, -1, dtype=np.int64)
        cnt = int(keep.sum())
        gl[keep.reshape(-1)] = flat[start : start + cnt]
        start += cnt
        gl = gl.reshape(grid, grid)
        cy, cx = _pixel_cells(frame, grid)
        px = gl[cy[:, None], cx[None, :]]
        fg = None if foreground is None else foreground[i]
        if fg is not None:
            fg = np.asarray(fg)
            px = np.where((fg[..., 0] if fg.ndim == 3 else fg) > 0, px, -1)
        grid_labels.append(gl)
        labels.append(px)
    out = CosegOutput(
        labels=labels,
        grid_labels=grid_labels,
        centres=np.asarray(km.cluster_centers_, dtype=np.float32)[order],
        n_parts=n_parts,
        counts=counts[order],
        inertia=float(km.inertia_),
    )
    if figure is not None:
        from .viz import save_figure

        arrays = [
            load_image(im, name=f"images[{i}]", exif_transpose=matcher.exif_transpose)
            for i, im in enumerate(images)
        ]
        titles = [
            Path(im).name if isinstance(im, (str, os.PathLike)) else f"image {i}"
            for i, im in enumerate(images)
        ]
        out.figure = save_figure(
            plot_cosegmentation(arrays, labels, n_parts, titles=titles), figure
        )
    return out


def part_colors(n_parts: int) -> np.ndarray:
    """``(n_parts, 3)`` RGB in [0, 1]: the fixed colour of each part (as :func:`corr.viz.point_colors`)."""
    from .viz import point_colors

    return np.asarray(point_colors(n_parts), dtype=np.float64)


def plot_cosegmentation(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    n_parts: int,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.55,
    columns: int = 4,
    panel_height: float = 3.0,
) -> Figure:
    """One panel per image: the ``(H, W, 3)`` photo with its ``(H, W)`` part labels overlaid.

    Part ``k`` has the same colour in every panel (:func:`part_colors`); ``-1`` is left
    uncoloured. A legend lists the parts. Returns an off-screen matplotlib figure
    (:func:`corr.viz.save_figure` writes it).
    """
    from matplotlib.patches import Patch

    from .viz import new_figure

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label maps")
    colors = part_colors(n_parts)
    n = len(images)
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    aspect = max(im.shape[1] / im.shape[0] for im in images)
    fig = new_figure(cols * panel_height * aspect, rows * panel_height + 0.6)
    for i, (im, lab) in enumerate(zip(images, labels, strict=True)):
        if im.shape[:2] != lab.shape:
            raise ValueError(f"image {i} is {im.shape[:2]} but its labels are {lab.shape}")
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(im)
        overlay = np.zeros((*lab.shape, 4))
        on = lab >= 0
        overlay[on, :3] = colors[lab[on]]
        overlay[on, 3] = alpha
        ax.imshow(overlay, interpolation="nearest")
        ax.set_title(titles[i] if titles else f"image {i}", fontsize=8)
        ax.set_axis_off()
    handles = [Patch(color=colors[k], label=f"part {k}") for k in range(n_parts)]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(n_parts, 10),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.6 / (rows * panel_height + 0.6), 1, 1))
    return fig
