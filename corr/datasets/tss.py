"""TSS loader (Taniai et al., "Joint Recovery of Dense Correspondence and Cosegmentation in Two
Images", CVPR 2016): image pairs with dense ground-truth flow and foreground masks.

Layout (``TSS_CVPR2016.zip`` unpacked)::

    ROOT/{FG3DCar,JODS,PASCAL}/{folder}/image1.png, image2.png
    ROOT/{FG3DCar,JODS,PASCAL}/{folder}/flow1.flo, flow2.flo    Middlebury .flo
    ROOT/{FG3DCar,JODS,PASCAL}/{folder}/mask1.png, mask2.png    foreground (non-zero)

As Junyi42/sd-dino@b85df18 ``utils/utils_tss.py`` (``make_dataset``, ``flow_loader``) reads it,
every folder gives two pairs: source ``image1`` -> target ``image2`` with ``flow2.flo`` and
``mask2.png``, and source ``image2`` -> target ``image1`` with ``flow1.flo`` and ``mask1.png``.
``flow{n}.flo`` lies on image n, the *target*: at target pixel ``(x, y)`` it holds ``(u, v)``
such that ``(x + u, y + v)`` is the corresponding source point, original pixels; the mask of
the target says where the flow is evaluated. ``category``: ``car`` for FG3DCar, else the
folder's name up to its first ``_``, lower-cased, with sd-dino's renaming (busd -> bus, bike ->
bicycle, plane -> aeroplane, suv -> car). ``pck_size`` (T_ref) = max(H, W) of the *source*
image (sd-dino's ``pckthres``: "threshold is max size of source image for pck").

The folders are listed from disk (no names are read from a data file); a folder or file that
is a symbolic link leading outside ``root`` is reported by ``python -m corr.datasets check tss``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import DatasetLayoutError, image_size

__all__ = ["TssPair", "load_tss", "read_flo", "read_mask", "TSS_SUBSETS", "TSS_LAYOUT"]

TSS_SUBSETS = ("FG3DCar", "JODS", "PASCAL")
TSS_LAYOUT = (
    "  ROOT/{FG3DCar,JODS,PASCAL}/{folder}/image1.png, image2.png\n"
    "  ROOT/{FG3DCar,JODS,PASCAL}/{folder}/flow1.flo, flow2.flo, mask1.png, mask2.png\n"
    "  with ROOT the folder TSS_CVPR2016.zip unpacks (TSS_CVPR2016)"
)
#: sd-dino's renaming of folder-name prefixes to class names
_RENAME = {"busd": "bus", "bike": "bicycle", "plane": "aeroplane", "suv": "car"}
FLO_MAGIC = 202021.25
_FILES = ("image1.png", "image2.png", "flow1.flo", "flow2.flo", "mask1.png", "mask2.png")


@dataclass(frozen=True)
class TssPair:
    """One TSS pair: the source and target images, the target's ground-truth flow and mask.

    ``flow`` and ``mask`` are files on the target's grid (``(H_t, W_t)``); ``pck_size`` is
    T_ref, max(H, W) of the source image, in pixels; sizes are ``(W, H)``.
    """

    pair_id: str
    subset: str  # FG3DCar | JODS | PASCAL
    category: str
    src_image: Path
    tgt_image: Path
    flow: Path
    mask: Path
    src_size: tuple[int, int]
    tgt_size: tuple[int, int]

    @property
    def pck_size(self) -> float:
        """T_ref: the source image's longer side (pixels)."""
        return float(max(self.src_size))


def read_flo(path: str | Path) -> np.ndarray:
    """A Middlebury ``.flo`` file -> ``(H, W, 2)`` float32 ``(u, v)``: float32 magic
    202021.25, int32 width, int32 height, then ``H * W * 2`` float32, row by row. Raises
    ValueError naming the file when it is not one (wrong magic, size or length)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(FLO_MAGIC):
        raise ValueError(f"{path}: not a Middlebury .flo file (its magic number is not 202021.25)")
    w, h = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(data) != 12 + 8 * w * h:
        raise ValueError(
            f"{path}: a .flo file of {w} x {h} pixels must hold {12 + 8 * max(w, 0) * max(h, 0)} "
            f"bytes, it holds {len(data)} (truncated or damaged)"
        )
    return np.frombuffer(data[12:], "<f4").reshape(h, w, 2).astype(np.float32)


def read_mask(path: str | Path) -> np.ndarray:
    """A TSS mask image -> ``(H, W)`` bool (non-zero = foreground; its first band if in colour)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    return (arr[..., 0] if arr.ndim == 3 else arr) > 0


def _category(subset: str, folder: str) -> str:
    if subset == "FG3DCar":
        return "car"
    name = folder.split("_")[0].lower()
    return _RENAME.get(name, name)


def load_tss(
    root: str | Path, split: str = "test", subsets: tuple[str, ...] = TSS_SUBSETS
) -> list[TssPair]:
    """The TSS pairs of ``subsets`` (all three by default), subset by subset, folders sorted,
    both directions of each folder. Raises DatasetLayoutError for a missing subset folder or
    a folder lacking one of its six files, ValueError for an unknown split or subset."""
    if split != "test":
        raise ValueError(f"TSS: unknown split {split!r}; it has only test")
    unknown = [s for s in subsets if s not in TSS_SUBSETS]
    if unknown:
        raise ValueError(f"TSS: unknown subset(s) {unknown}; use {', '.join(TSS_SUBSETS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError("TSS", TSS_LAYOUT, root)
    pairs: list[TssPair] = []
    for subset in subsets:
        base = root / subset
        if not base.is_dir():
            raise DatasetLayoutError("TSS", TSS_LAYOUT, base)
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            for name in _FILES:
                if not (folder / name).is_file():
                    raise DatasetLayoutError("TSS", TSS_LAYOUT, folder / name)
            sizes = {n: image_size(folder / f"image{n}.png") or (0, 0) for n in (1, 2)}
            category = _category(subset, folder.name)
            for s, t in ((1, 2), (2, 1)):
                pairs.append(
                    TssPair(
                        pair_id=f"{subset}/{folder.name}:{s}-{t}",
                        subset=subset,
                        category=category,
                        src_image=folder / f"image{s}.png",
                        tgt_image=folder / f"image{t}.png",
                        flow=folder / f"flow{t}.flo",
                        mask=folder / f"mask{t}.png",
                        src_size=sizes[s],
                        tgt_size=sizes[t],
                    )
                )
    return pairs
