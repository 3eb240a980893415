"""Image loading and atomic file writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def load_image(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any supported image -> ``(H, W, 3)`` uint8 RGB array.

    Accepts a file path, a PIL image, a numpy array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``
    (uint8, uint16, or float in [0, 1]), or a tensor ``(3, H, W)`` / ``(1, 3, H, W)`` (same
    types). 16-bit pixels (arrays, and 16-bit grayscale files such as 16-bit PNGs) are scaled to
    8 bits (``round(v / 257)``), not clipped; non-finite float pixels are refused. Pixels are
    used as stored: EXIF orientation is not applied, so keypoints annotated on the stored pixels
    stay valid. ``name`` is used in error messages.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such image file: {path}")
        try:
            with Image.open(path) as im:
                return _pil_rgb(im, f"{name} ({path})")
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{name}: cannot read image file {path}: {err}") from err
    if isinstance(image, Image.Image):
        return _pil_rgb(image, name)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(
                f"{name}: a tensor image must be (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}"
            )
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(
                f"{name}: an array image must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
            )
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        arr = arr[:, :, :3]
        if arr.dtype == np.uint16:
            arr = _from_16bit(arr)
        elif arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(
                    f"{name}: array images must be uint8, uint16 or float in [0, 1], got {arr.dtype}"
                )
            bad = int((~np.isfinite(arr)).sum())
            if bad:
                raise ValueError(
                    f"{name}: {bad} pixel value(s) are NaN or infinite; fill or mask them first"
                )
            if arr.min() < 0 or arr.max() > 1:
                raise ValueError(f"{name}: float images must lie in [0, 1]")
            arr = np.round(arr * 255).astype(np.uint8)
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{name}: the image is empty ({arr.shape[1]}x{arr.shape[0]})")
        return np.ascontiguousarray(arr)
    raise TypeError(
        f"{name}: expected a path, PIL image, numpy array or tensor, got {type(image).__name__}"
    )


def _from_16bit(arr: np.ndarray) -> np.ndarray:
    """16-bit pixels -> 8 bits, ``round(v / 257)`` (65535 -> 255)."""
    return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)


def _pil_rgb(im: Image.Image, name: str) -> np.ndarray:
    """A PIL image -> ``(H, W, 3)`` uint8; 16-bit grayscale is scaled, not clipped."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(
                f"{name}: {im.mode} pixels outside 0..65535 (a 32-bit image); convert it to 8 bits"
            )
        gray = _from_16bit(arr.astype(np.uint16))
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if im.mode == "F":
        raise ValueError(
            f"{name}: a 32-bit float image; convert it to 8 bits (or pass an array in [0, 1])"
        )
    return np.asarray(im.convert("RGB"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON write, indented, keys in insertion order."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
