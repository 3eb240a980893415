"""Coordinate frames: original image, letterboxed square, feature grid.

Every model sees the image *letterboxed* to a square of side ``T`` (docs/protocol.md §1): scaled so
the long side is ``T`` (short side ``round(T * short / long)``) and zero-padded symmetrically,
the pad offset on the short axis being ``(T - new_short) // 2``. A point maps
``x -> x * s + off_x``, ``y -> y * s + off_y`` with ``s = T / max(W, H)``, computed as
``x * T / max(W, H)`` (multiply first) so that exact cell boundaries stay exact.

A feature grid of ``g x g`` cells covers the letterboxed square: cell ``p`` spans
``[p * T / g, (p + 1) * T / g)`` and its centre is ``(p + 0.5) * T / g`` (``14 p + 7`` for a
60-wide grid on 840). All point arrays here are ``(N, 2)`` float ``(x, y)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Letterbox:
    """The letterbox of a ``width x height`` image into a ``size x size`` square."""

    width: int
    height: int
    size: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.size <= 0:
            raise ValueError(
                f"letterbox needs positive sizes, got image {self.width}x{self.height} "
                f"and square side {self.size}"
            )

    @property
    def scale(self) -> float:
        """``s = T / max(W, H)``: letterbox pixels per original pixel."""
        return self.size / max(self.width, self.height)

    @property
    def new_size(self) -> tuple[int, int]:
        """``(new_w, new_h)`` of the resized image inside the square."""
        if self.width >= self.height:
            return self.size, round(self.size * self.height / self.width)
        return round(self.size * self.width / self.height), self.size

    @property
    def offset(self) -> tuple[int, int]:
        """``(off_x, off_y)``: the top-left corner of the image inside the square."""
        new_w, new_h = self.new_size
        return (self.size - new_w) // 2, (self.size - new_h) // 2

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the image content in the letterbox frame (x1, y1 exclusive)."""
        (ox, oy), (nw, nh) = self.offset, self.new_size
        return ox, oy, ox + nw, oy + nh

    def to_letterbox(self, points: np.ndarray, arithmetic: str = "exact") -> np.ndarray:
        """Original-pixel points ``(N, 2)`` -> letterbox-frame points ``(N, 2)``.

        ``arithmetic="exact"`` computes ``x * T / max(W, H) + off`` in float64 (multiply first:
        a point on a cell boundary stays on it). ``"float32"`` reproduces the reference code,
        which scales float32 keypoints by the float32 factor ``T / max(W, H)`` (see
        docs/protocol.md, "Parity knobs").
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        off = np.asarray(self.offset, dtype=np.float64)
        if arithmetic == "exact":
            return pts * self.size / max(self.width, self.height) + off
        if arithmetic == "float32":
            scaled = pts.astype(np.float32) * np.float32(self.scale)
            return (scaled + off.astype(np.float32)).astype(np.float64)
        raise ValueError(f"arithmetic must be 'exact' or 'float32', got {arithmetic!r}")

    def from_letterbox(self, points: np.ndarray) -> np.ndarray:
        """Letterbox-frame points ``(N, 2)`` -> original-pixel points ``(N, 2)``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (
            (pts - np.asarray(self.offset, dtype=np.float64))
            * max(self.width, self.height)
            / self.size
        )

    def apply(self, image: np.ndarray, resample: str = "lanczos") -> np.ndarray:
        """Letterbox an ``(H, W, 3)`` uint8 RGB image into a ``(T, T, 3)`` uint8 square."""
        _check_apply(self, image, resample, "letterbox")
        new_w, new_h = self.new_size
        resized = np.asarray(
            Image.fromarray(image).resize((new_w, new_h), resample=RESAMPLE[resample])
        )
        out = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        ox, oy = self.offset
        out[oy : oy + new_h, ox : ox + new_w] = resized
        return out


def _check_apply(frame, image: np.ndarray, resample: str, what: str) -> None:
    """The input checks of a frame's ``apply``: the image's size and a known filter."""
    if image.shape[:2] != (frame.height, frame.width):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]} but the {what} was made for "
            f"{frame.width}x{frame.height}"
        )
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {resample!r}")


@dataclass(frozen=True)
class Stretch:
    """DIFT's frame: the ``width x height`` image resized to a ``size x size`` square, aspect not
    kept (no padding). Same interface as :class:`Letterbox`; ``x -> x * T / W``, ``y -> y * T / H``."""

    width: int
    height: int
    size: int

    def __post_init__(self) -> None:
        Letterbox(self.width, self.height, self.size)  # the same size checks

    new_size = property(lambda self: (self.size, self.size))
    offset = property(lambda self: (0, 0))
    content_box = property(lambda self: (0, 0, self.size, self.size))

    def to_letterbox(self, points: np.ndarray, arithmetic: str = "exact") -> np.ndarray:
        """Original-pixel points ``(N, 2)`` -> frame points ``(N, 2)``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if arithmetic not in ("exact", "float32"):
            raise ValueError(f"arithmetic must be 'exact' or 'float32', got {arithmetic!r}")
        out = pts * self.size / np.array([self.width, self.height], dtype=np.float64)
        return out.astype(np.float32).astype(np.float64) if arithmetic == "float32" else out

    def from_letterbox(self, points: np.ndarray) -> np.ndarray:
        """Frame points ``(N, 2)`` -> original-pixel points ``(N, 2)``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts * np.array([self.width, self.height], dtype=np.float64) / self.size

    def apply(self, image: np.ndarray, resample: str = "lanczos") -> np.ndarray:
        """Resize an ``(H, W, 3)`` uint8 RGB image to ``(T, T, 3)``."""
        _check_apply(self, image, resample, "frame")
        return np.array(  # a writable copy, as Letterbox.apply returns
            Image.fromarray(image).resize((self.size, self.size), resample=RESAMPLE[resample])
        )


RESIZE_MODES = ("letterbox", "stretch")


def make_frame(
    width: int, height: int, size: int, resize: str = "letterbox"
) -> Letterbox | Stretch:
    """The frame a model sees: ``"letterbox"`` (aspect kept, zero padding) or ``"stretch"``."""
    if resize == "letterbox":
        return Letterbox(width, height, size)
    if resize == "stretch":
        return Stretch(width, height, size)
    raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")


def letterbox_to_grid(points: np.ndarray, size: int, grid: int) -> np.ndarray:
    """Letterbox-frame points -> continuous grid coordinates (cell ``p`` spans ``[p, p+1)``),
    computed as ``x * grid / size`` (multiply first)."""
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) * grid / size


def grid_cells(points: np.ndarray, size: int, grid: int, arithmetic: str = "exact") -> np.ndarray:
    """Letterbox-frame points -> integer cell indices ``(N, 2)`` (``floor``, clipped to the grid).

    ``arithmetic="float32"`` reproduces the reference code's ``int(float32(grid / size) * x)``.
    """
    if arithmetic == "exact":
        cont = letterbox_to_grid(points, size, grid)
    elif arithmetic == "float32":
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).astype(np.float32)
        cont = (np.float32(grid / size) * pts).astype(np.float64)
    else:
        raise ValueError(f"arithmetic must be 'exact' or 'float32', got {arithmetic!r}")
    return np.clip(np.floor(cont).astype(np.int64), 0, grid - 1)


def grid_to_letterbox(
    cells: np.ndarray, size: int, grid: int, centre_shift: float = 0.0
) -> np.ndarray:
    """Grid coordinates (integer or fractional cell indices) -> letterbox-frame cell centres.

    Cell ``p`` maps to ``(p + 0.5) * size / grid + centre_shift`` (``14 p + 7`` on a 60 grid of
    840; sd-dino's ``14 p + 6.5`` is ``centre_shift=-0.5``).
    """
    return (np.asarray(cells, dtype=np.float64).reshape(-1, 2) + 0.5) * size / grid + centre_shift


def content_mask(letterbox: Letterbox, grid: int) -> np.ndarray:
    """``(grid, grid)`` bool: cells that overlap the image content (not only padding)."""
    edges = np.arange(grid + 1) * letterbox.size / grid
    x0, y0, x1, y1 = letterbox.content_box
    inside_x = (edges[1:] > x0) & (edges[:-1] < x1)
    inside_y = (edges[1:] > y0) & (edges[:-1] < y1)
    return inside_y[:, None] & inside_x[None, :]


def clip_to_image(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points ``(N, 2)`` clipped onto the pixels of a ``width x height`` image (a copy)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.stack([pts[:, 0].clip(0, width - 1), pts[:, 1].clip(0, height - 1)], axis=1)


def mirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """Points of an image -> the same points in its horizontal mirror (``x' = W - 1 - x``).

    Pixel ``x`` of a ``W``-wide image lands on pixel ``W - 1 - x`` when the array is flipped.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
    pts[:, 0] = (width - 1) - pts[:, 0]
    return pts


def grid_to_image(grid_map: np.ndarray, letterbox: Letterbox, mode: str = "bilinear") -> np.ndarray:
    """A map on the letterbox grid ``(g, g)`` or ``(g, g, C)`` -> ``(H, W)`` / ``(H, W, C)`` on
    the original image.

    Each original pixel centre is mapped into the letterboxed square (so the padding is cropped
    away) and the grid is sampled there (cell ``p`` spans ``[p T/g, (p+1) T/g)``), with
    ``mode`` ``"bilinear"`` or ``"nearest"``. NaN cells (masked, e.g. padding) are left out of
    the interpolation; a pixel is NaN only where no valid cell contributes.
    """
    import torch  # here, so that importing the frames costs no torch
    import torch.nn.functional as F

    arr = np.asarray(grid_map, dtype=np.float64)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[:, :, None]
    g_h, g_w, c = arr.shape
    w, h, t = letterbox.width, letterbox.height, letterbox.size
    xs = np.arange(w) + 0.5
    ys = np.arange(h) + 0.5
    # pixel centre (x + 0.5) of the original -> letterbox coordinate; letterbox pixel edges
    # are at integer coordinates, so normalised u = 2 X / T - 1 (align_corners=False)
    s = letterbox.scale
    ox, oy = letterbox.offset
    u = 2 * (xs * s + ox) / t - 1
    v = 2 * (ys * s + oy) / t - 1
    grid = torch.stack(
        torch.meshgrid(torch.from_numpy(v), torch.from_numpy(u), indexing="ij")[::-1], dim=-1
    )[None]
    if g_h != g_w:
        raise ValueError(
            f"grid map must be square (it covers the letterbox square), got {g_h}x{g_w}"
        )
    # NaN-aware: interpolate the values with NaN cells at weight 0 and renormalise, so pixels
    # next to masked (padding) cells take the valid neighbours' values instead of NaN
    valid = np.isfinite(arr).all(axis=2, keepdims=True).astype(np.float64)
    filled = np.where(valid > 0, arr, 0.0)
    stacked = torch.from_numpy(np.concatenate([filled * valid, valid], axis=2)).permute(2, 0, 1)[
        None
    ]
    out = F.grid_sample(stacked, grid, mode=mode, padding_mode="border", align_corners=False)
    out = out[0].permute(1, 2, 0).numpy()
    weight = out[:, :, c:]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(weight > 1e-9, out[:, :, :c] / weight, np.nan)
    return values[:, :, 0] if squeeze else values
