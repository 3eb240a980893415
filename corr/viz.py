"""Plotting helpers for the demos: correspondence figures and feature views.

Everything here renders off-screen with matplotlib's Agg canvas (``matplotlib.figure.Figure``
+ ``FigureCanvasAgg``, never ``pyplot``), so it works on servers without a display and does not
change the global matplotlib backend of the calling program.

Coordinates: point arrays are ``(N, 2)`` float ``(x, y)`` in **original image pixels**, as the
:class:`~corr.matcher.Matcher` returns them. Feature maps are ``(D, g, g)`` descriptors on the
grid that covers the *letterboxed* square (:mod:`corr.geometry`); :func:`corr.geometry.grid_to_image` maps
such a grid back onto the original image (padding cropped away, resized to the image).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_write_bytes

__all__ = [
    "joint_pca_rgb",
    "label_offsets",
    "new_figure",
    "plot_correspondences",
    "plot_feature_views",
    "point_colors",
    "readable_by_others",
    "save_figure",
    "warp_picture",
]


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def new_figure(width_in: float, height_in: float, dpi: int = 100) -> Figure:
    """A figure on an Agg canvas (no GUI, no pyplot state)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int | None = None) -> Path:
    """Render ``fig`` to a PNG (or any format matplotlib knows from the suffix), atomically."""
    path = Path(path)
    buf = io.BytesIO()
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig.savefig(buf, format=fmt, dpi=dpi or fig.dpi, bbox_inches="tight", pad_inches=0.05)
    atomic_write_bytes(path, buf.getvalue())
    readable_by_others(path)
    return path


def readable_by_others(path: str | os.PathLike) -> None:
    """Give a file written through a temporary file (mode 0600) the usual ``0666 & ~umask``."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def point_colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinct RGB colours (``tab10`` up to 10 points, ``tab20`` up to 20, else evenly
    spaced hues)."""
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [tuple(cmap(i)[:3]) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [tuple(cmap(i)[:3]) for i in range(n)]
    cmap = colormaps["hsv"]
    return [tuple(cmap(i / n)[:3]) for i in range(n)]


def _fit_height(image: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    """Resize an ``(H, W, 3)`` uint8 image to ``height`` rows; return it and the scale."""
    from PIL import Image

    h, w = image.shape[:2]
    s = height / h
    if abs(s - 1) < 1e-9:
        return image, 1.0
    new_w = max(1, round(w * s))
    out = np.asarray(Image.fromarray(image).resize((new_w, height), Image.Resampling.BICUBIC))
    return out, new_w / w


#: where a point's label may go, in figure pixels from the point (right/left, up/down)
_LABEL_SLOTS = ((5, -5), (5, 5), (-5, -5), (-5, 5), (9, 0), (-9, 0), (0, -11), (0, 11))


def label_offsets(
    points: np.ndarray, texts: Sequence[str], char_px: float = 6.5, height_px: float = 12.0
) -> list[tuple[float, float]]:
    """Offsets ``(dx, dy)`` in figure pixels (y down) for each point's label, chosen greedily so
    that labels cover neither each other nor other points: each label takes the first of eight
    slots around its point with the least overlap with the labels already placed and the
    markers. ``points`` ``(N, 2)`` figure pixels (NaN rows skipped); a label of ``k``
    characters is ``k * char_px + 4`` wide and ``height_px`` high, beside its slot."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    boxes: list[tuple[float, float, float, float]] = []
    markers = [(x - 4, y - 4, x + 4, y + 4) for x, y in pts if np.isfinite([x, y]).all()]

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return max(w, 0.0) * max(h, 0.0)

    out = []
    for (x, y), text in zip(pts, texts, strict=True):
        if not np.isfinite([x, y]).all():
            out.append(_LABEL_SLOTS[0])
            continue
        w = len(text) * char_px + 4
        best, best_cost = None, None
        for dx, dy in _LABEL_SLOTS:
            x0 = x + dx if dx >= 0 else x + dx - w
            if dx == 0:
                x0 = x - w / 2
            y0 = y + dy if dy > 0 else y + dy - height_px
            if dy == 0:
                y0 = y - height_px / 2
            box = (x0, y0, x0 + w, y0 + height_px)
            own = (x - 4, y - 4, x + 4, y + 4)
            cost = sum(overlap(box, b) for b in boxes) + sum(
                overlap(box, m) for m in markers if m != own
            )
            if best_cost is None or cost < best_cost - 1e-9:
                best, best_cost = ((dx, dy), box), cost
        boxes.append(best[1])
        out.append(best[0])
    return out


def warp_picture(warped: np.ndarray, valid: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """A warp to look at: the warped source (``Pair.warp``'s ``warped``) where ``valid``, and
    elsewhere the target greyed out (its luminance, faded halfway to light grey).
    ``(H_t, W_t, 3)`` uint8."""
    grey = tgt.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = np.round(0.5 * grey + 0.5 * 200).astype(np.uint8)
    return np.where(valid[..., None], warped, faded[..., None])


def plot_correspondences(
    src: np.ndarray,
    tgt: np.ndarray,
    points0: np.ndarray,
    points1: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    confidence: np.ndarray | None = None,
    legend: Sequence[str] | None = None,
    title: str | None = None,
    ground_truth: np.ndarray | None = None,
    threshold: float | None = None,
    caption: Sequence[str] | None = None,
    height: int = 480,
    gap: int = 16,
) -> Figure:
    """Source left, target right (both scaled to ``height`` rows), coloured numbered points and
    a line joining each source point to its match.

    ``points0``/``points1``: ``(N, 2)`` in original pixels of ``src``/``tgt``; rows with NaN are
    skipped. ``labels`` (default ``"0".."N-1"``) are written next to the points. With
    ``ground_truth`` (``(N, 2)`` target pixels, NaN where unknown) each true target point is
    drawn as a ring joined to the prediction by a dotted line, and with ``threshold`` (target
    pixels, e.g. PCK@0.10's) the list says which predictions are within it. The list of points
    (``legend``: one text per point, e.g. ``"0 left_eye"``; default the labels), with their
    confidence and error, goes in a panel right of the images, never over them; ``caption``
    lines go under the images.
    """
    p0 = np.asarray(points0, dtype=np.float64).reshape(-1, 2)
    p1 = np.asarray(points1, dtype=np.float64).reshape(-1, 2)
    if len(p0) != len(p1):
        raise ValueError(f"{len(p0)} source points but {len(p1)} target points")
    n = len(p0)
    gt = None
    if ground_truth is not None:
        gt = np.asarray(ground_truth, dtype=np.float64).reshape(-1, 2)
        if len(gt) != n:
            raise ValueError(f"{n} points but {len(gt)} ground-truth points")
    a, sa = _fit_height(src, height)
    b, sb = _fit_height(tgt, height)
    canvas = np.full((height, a.shape[1] + gap + b.shape[1], 3), 255, dtype=np.uint8)
    canvas[:, : a.shape[1]] = a
    x_off = a.shape[1] + gap
    canvas[:, x_off:] = b
    labels = [str(i) for i in range(n)] if labels is None else [str(x) for x in labels]
    texts = labels if legend is None else [str(x) for x in legend]
    colors = point_colors(n)
    listed = confidence is not None or gt is not None

    dpi = 100
    panel = 280 if listed else 0  # px right of the images for the list of points
    top = 35 if title else 0
    bottom = 8 + 16 * len(caption) if caption else 0
    width, total_h = canvas.shape[1] + panel, canvas.shape[0] + top + bottom
    fig = new_figure(width / dpi, total_h / dpi, dpi)
    ax = fig.add_axes((0, bottom / total_h, canvas.shape[1] / width, canvas.shape[0] / total_h))
    ax.imshow(canvas, interpolation="bilinear")
    ax.set_axis_off()
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    marker = max(5.0, height / 70)
    shown = ~(np.isnan(p0).any(1) | np.isnan(p1).any(1))
    where0 = np.where(shown[:, None], p0 * sa, np.nan)
    where1 = np.where(shown[:, None], p1 * sb + [x_off, 0], np.nan)
    # labels placed per image, away from each other and from the other points
    offsets = [label_offsets(where0, labels), label_offsets(where1, labels)]
    px_to_pt = 72 / dpi
    for i in range(n):
        if not shown[i]:
            continue
        x0, y0 = where0[i]
        x1, y1 = where1[i]
        c = colors[i]
        ax.plot([x0, x1], [y0, y1], "-", color=c, lw=1.2, alpha=0.8)
        if gt is not None and np.isfinite(gt[i]).all():
            xg, yg = gt[i] * sb
            xg += x_off
            ax.plot([x1, xg], [y1, yg], ":", color=c, lw=1.6)
            ax.plot(xg, yg, "o", ms=marker * 1.5, mfc="none", mec="white", mew=3.0)
            ax.plot(xg, yg, "o", ms=marker * 1.5, mfc="none", mec=c, mew=1.6)
        for side, (x, y) in enumerate(((x0, y0), (x1, y1))):
            ax.plot(x, y, "o", ms=marker, mfc=c, mec="white", mew=1.2)
            dx, dy = offsets[side][i]
            ax.annotate(
                labels[i],
                (x, y),
                xytext=(dx * px_to_pt, -dy * px_to_pt),
                textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="top" if dy > 0 else "bottom" if dy < 0 else "center",
                color="white",
                fontsize=8,
                fontweight="bold",
                bbox={"boxstyle": "round,pad=0.15", "fc": c, "ec": "none", "alpha": 0.85},
            )
    if listed:
        conf = None if confidence is None else np.asarray(confidence, dtype=np.float64).reshape(-1)
        rows = []
        for i in range(n):
            parts = [texts[i]]
            if conf is not None:
                parts.append(f"conf {conf[i]:.2f}" if np.isfinite(conf[i]) else "conf -")
            if gt is not None:
                if np.isfinite(gt[i]).all() and np.isfinite(p1[i]).all():
                    err = float(np.hypot(*(p1[i] - gt[i])))
                    mark = "" if threshold is None else ("  ok" if err < threshold else "  off")
                    parts.append(f"err {err:.0f} px{mark}")
                else:
                    parts.append("no label")
            rows.append(ax.plot([], [], "o", color=colors[i], label="  ".join(parts))[0])
        head = "point" + ("  confidence" if conf is not None else "")
        if gt is not None:
            head += "  error\nring: the labelled target point; error: its distance"
            if threshold is not None:
                head += f"\nto the prediction in target pixels (ok: under {threshold:.0f} px)"
            else:
                head += "\nto the prediction in target pixels"
        fig.legend(
            handles=rows,
            title=head,
            loc="upper left",
            bbox_to_anchor=((canvas.shape[1] + 6) / width, 1 - top / total_h),
            fontsize=7,
            title_fontsize=7,
            frameon=False,
            alignment="left",
        )
    if title:
        fig.text(0.5, 1 - (top / 2) / total_h, title, ha="center", va="center", fontsize=9)
    for k, line in enumerate(caption or []):
        fig.text(
            4 / width, (bottom - 12 - 16 * k) / total_h, line, ha="left", va="center", fontsize=8
        )
    return fig


# --------------------------------------------------------------------------------------------
# Feature views
# --------------------------------------------------------------------------------------------


def joint_pca_rgb(
    descriptors: Sequence[torch.Tensor], masks: Sequence[np.ndarray | torch.Tensor] | None = None
) -> list[np.ndarray]:
    """First three principal components of several ``(D, g, g)`` descriptor maps as RGB.

    One PCA is fitted on the rows of *all* maps together (cells where ``masks`` is False, e.g.
    letterbox padding, are left out of the fit), so equal colours mean similar features across
    images, as in the SD+DINO paper's figures. Each component is min-max scaled to ``[0, 1]``
    jointly over all images' valid cells. Returns one ``(g, g, 3)`` float array per map with
    masked cells set to NaN.
    """
    if not descriptors:
        raise ValueError("joint_pca_rgb needs at least one descriptor map")
    dims = {d.shape[0] for d in descriptors}
    if len(dims) != 1:
        raise ValueError(f"descriptor maps differ in depth: {sorted(dims)}")
    flats, keeps = [], []
    for i, d in enumerate(descriptors):
        if d.ndim != 3:
            raise ValueError(f"descriptor {i} must be (D, g, g), got {tuple(d.shape)}")
        flat = d.detach().float().cpu().reshape(d.shape[0], -1).T  # (g*g, D)
        keep = (
            torch.ones(flat.shape[0], dtype=torch.bool)
            if masks is None
            else torch.as_tensor(np.asarray(masks[i]), dtype=torch.bool).reshape(-1)
        )
        flats.append(flat)
        keeps.append(keep)
    rows = torch.cat([f[k] for f, k in zip(flats, keeps, strict=True)]).double()
    if rows.shape[0] < 2:
        raise ValueError("joint_pca_rgb: fewer than two valid cells")
    mean = rows.mean(0, keepdim=True)
    x = rows - mean
    k = min(3, x.shape[1])
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    _, vecs = torch.linalg.eigh(cov)
    comps = vecs[:, -k:].flip(1)  # (D, k), leading component first
    idx = comps.abs().argmax(0)  # fix the signs so the result is deterministic
    signs = torch.sign(comps[idx, torch.arange(k)])
    signs[signs == 0] = 1
    comps = comps * signs
    proj_valid = x @ comps
    lo = proj_valid.min(0).values
    hi = proj_valid.max(0).values
    span = (hi - lo).clamp_min(1e-12)
    out = []
    for d, flat, keep in zip(descriptors, flats, keeps, strict=True):
        p = ((flat.double() - mean) @ comps - lo) / span
        rgb = torch.zeros(flat.shape[0], 3, dtype=torch.float64)
        rgb[:, :k] = p.clamp(0, 1)
        rgb[~keep] = float("nan")
        out.append(rgb.reshape(d.shape[1], d.shape[2], 3).numpy())
    return out


def plot_feature_views(
    images: Sequence[np.ndarray],
    pca_rgb: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    query: tuple[float, float] | None = None,
    similarity: Sequence[np.ndarray | None] | None = None,
    best: Sequence[tuple[float, float] | None] | None = None,
    panel_height: float = 3.0,
    suptitle: str | None = None,
) -> Figure:
    """One row per image: the image, its PCA colours (``(H, W, 3)`` in [0, 1], NaN = none)
    and, with ``similarity`` (one ``(H, W)`` map or None per image), the query's similarity map.

    ``query`` ``(x, y)`` is drawn on the first image; ``best[i]`` (the best match) on image ``i``
    and its similarity map.
    """
    n = len(images)
    if len(pca_rgb) != n:
        raise ValueError(f"{n} images but {len(pca_rgb)} PCA maps")
    cols = 3 if similarity is not None else 2
    aspect = max(im.shape[1] / im.shape[0] for im in images)
    fig = new_figure(cols * panel_height * aspect, n * panel_height + (0.4 if suptitle else 0), 100)
    axes = fig.subplots(n, cols, squeeze=False)
    for i, im in enumerate(images):
        name = titles[i] if titles else f"image {i}"
        ax = axes[i][0]
        ax.imshow(im)
        ax.set_title(name, fontsize=8)
        rgb = np.nan_to_num(np.asarray(pca_rgb[i], dtype=np.float64), nan=0.0).clip(0, 1)
        axes[i][1].imshow(rgb, interpolation="nearest")
        axes[i][1].set_title("fused features: PCA 1-3 as RGB (joint)", fontsize=8)
        if query is not None and i == 0:
            for a in (axes[i][0], axes[i][1]):
                a.plot(*query, "o", ms=9, mfc="red", mec="white", mew=1.5)
        if similarity is not None:
            sim = similarity[i]
            ax_s = axes[i][2]
            if sim is None:
                ax_s.imshow(im, alpha=0.35)
                ax_s.text(
                    0.5,
                    0.5,
                    "query image" if i == 0 else "-",
                    transform=ax_s.transAxes,
                    ha="center",
                    va="center",
                    fontsize=9,
                )
            else:
                ax_s.imshow(im)
                shown = ax_s.imshow(sim, cmap="jet", alpha=0.55, vmin=-1, vmax=1)
                ax_s.set_title("cosine similarity to the query", fontsize=8)
                fig.colorbar(shown, ax=ax_s, fraction=0.035, pad=0.02)
            if best is not None and best[i] is not None:
                for a in (axes[i][0], ax_s):
                    a.plot(*best[i], "*", ms=14, mfc="yellow", mec="black", mew=1.0)
        for a in axes[i]:
            a.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig
