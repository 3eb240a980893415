"""Pictures for the interactive demo: points with fixed colours, a similarity heat map.

Everything here works on ``(H, W, 3)`` uint8 arrays; points are ``(x, y)`` in the pixels of
the array they are drawn on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

#: Point colours by click order: tab10, then tab20's light shades; the 21st click reuses the
#: first colour. A point keeps its colour while more points are added.
_TAB10 = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
_TAB20_LIGHT = [
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
]
PALETTE: tuple[tuple[int, int, int], ...] = tuple(_TAB10 + _TAB20_LIGHT)


def point_color(i: int) -> tuple[int, int, int]:
    """The colour of the ``i``-th clicked point (0-based), the same on both images."""
    return PALETTE[i % len(PALETTE)]


def display_scale(width: int, height: int, max_side: int = 1024) -> float:
    """Scale at which an image is shown (at most ``max_side`` pixels on its longer side)."""
    return min(1.0, max_side / max(width, height))


def marker_radius(image: np.ndarray) -> float:
    """A point marker's radius for ``image``: about 1.2% of its longer side, at least 5 px."""
    return max(5.0, 0.012 * max(image.shape[:2]))


def resized(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (bilinear; unchanged at 1)."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def to_display(xy: Sequence[float], scale: float) -> tuple[float, float]:
    """Original pixel ``(x, y)`` (pixel index = coordinate) -> the shown image's pixels."""
    return (xy[0] + 0.5) * scale - 0.5, (xy[1] + 0.5) * scale - 0.5


def from_display(xy: Sequence[float], scale: float) -> tuple[float, float]:
    """A pixel of the shown image -> original pixel ``(x, y)``; inverse of :func:`to_display`."""
    return (xy[0] + 0.5) / scale - 0.5, (xy[1] + 0.5) / scale - 0.5


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """Blend a similarity map ``(H, W)`` (NaN: not shown) over ``image`` with the ``turbo``
    colour map, scaled from the map's minimum (blue) to its maximum (red)."""
    from matplotlib import colormaps

    finite = np.isfinite(heat)
    out = image.astype(np.float32)
    if not finite.any():
        return image.copy()
    lo, hi = float(heat[finite].min()), float(heat[finite].max())
    norm = np.where(finite, (heat - lo) / max(hi - lo, 1e-12), 0.0)
    colours = colormaps["turbo"](norm)[..., :3] * 255.0
    a = np.where(finite, opacity, 0.0)[..., None]
    return (out * (1 - a) + colours * a).round().clip(0, 255).astype(np.uint8)


def draw_points(
    image: np.ndarray,
    points: Sequence[Sequence[float]],
    colors: Sequence[tuple[int, int, int]],
    radius: float = 7.0,
    style: str = "dot",
) -> np.ndarray:
    """Draw ``points`` (``(x, y)`` in ``image``'s pixels) as filled dots with a white rim
    (``style="dot"``) or as rings with a cross (``"ring"``); returns a new array."""
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    for (x, y), c in zip(points, colors, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        box = (x - radius, y - radius, x + radius, y + radius)
        if style == "dot":
            draw.ellipse(box, fill=c, outline=(255, 255, 255), width=2)
        elif style == "ring":
            draw.ellipse(box, outline=(255, 255, 255), width=5)
            draw.ellipse(box, outline=c, width=3)
            draw.line((x - radius, y, x + radius, y), fill=c, width=2)
            draw.line((x, y - radius, x, y + radius), fill=c, width=2)
        else:
            raise ValueError(f"style must be 'dot' or 'ring', got {style!r}")
    return np.asarray(im)
