"""The common pair record every data-set loader returns, and shared loader helpers.

Frames: all coordinates are pixels ``(x, y)`` of the *original* (stored) image, 0-based, as the
data set writes them; no letterbox or resize is applied here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PairRecord",
    "DatasetLayoutError",
    "check_images",
    "image_size",
]


class DatasetLayoutError(FileNotFoundError):
    """The root folder does not have the expected on-disk layout.

    The message names the data set, the expected layout and the first missing path.
    """

    def __init__(self, dataset: str, layout: str, missing: str | Path, hint: str = "") -> None:
        self.dataset = dataset
        self.layout = layout
        self.missing = Path(missing)
        self.hint = hint
        msg = f"{dataset}: not found: {missing}\nexpected layout:\n{layout}"
        if hint:
            msg += f"\n{hint}"
        super().__init__(msg)

    def __reduce__(self):  # keep picklable despite the custom signature
        return (DatasetLayoutError, (self.dataset, self.layout, self.missing, self.hint))


@dataclass(frozen=True, eq=False)
class PairRecord:
    """One source/target pair with ground-truth keypoints.

    Index ``k`` of the K axis is the category's semantic keypoint id (SPair-71k: the keys
    ``"0".."K-1"`` of the image annotation's ``kps``; AP-10K: the 17 COCO keypoints; PF-Pascal:
    the pair's own point order). Coordinates are original-image pixels ``(x, y)``; rows of
    invisible keypoints are NaN.

    ``category``: SPair-71k / PF-Pascal class name; AP-10K: the species for the intra-species
    subset, the family for cross-species, ``"all"`` for cross-family (as in GeoAware-SC).
    ``pck_size`` is ``T_ref`` in target pixels (docs/protocol.md §7). ``table_category`` is the key
    into the geo-group / flip tables (``"all"`` for AP-10K, the category otherwise).
    Records compare by identity (``eq=False``) because they hold arrays.
    """

    dataset: str
    pair_id: str
    category: str
    src_image: Path
    tgt_image: Path
    src_kps: np.ndarray  # (K, 2) float64, NaN where not visible
    tgt_kps: np.ndarray  # (K, 2) float64
    src_vis: np.ndarray  # (K,) bool
    tgt_vis: np.ndarray  # (K,) bool
    pck_size: float
    src_size: tuple[int, int]  # (W, H)
    tgt_size: tuple[int, int]  # (W, H)
    src_bbox: tuple[float, float, float, float] | None  # x1, y1, x2, y2
    tgt_bbox: tuple[float, float, float, float] | None
    flags: dict = field(default_factory=dict)
    table_category: str = ""

    @property
    def num_keypoints(self) -> int:
        """K, the length of the keypoint axis."""
        return int(self.src_kps.shape[0])

    @property
    def mutual(self) -> np.ndarray:
        """(K,) bool: keypoints visible in both images (the ones PCK evaluates)."""
        return np.asarray(self.src_vis, bool) & np.asarray(self.tgt_vis, bool)


def make_kps(coords: Sequence[Any] | np.ndarray, vis: Sequence[bool] | np.ndarray) -> np.ndarray:
    """(K, 2) float64 copy of ``coords`` with NaN rows where ``vis`` is False (read-only)."""
    arr = np.array(coords, dtype=np.float64).reshape(-1, 2)
    v = np.asarray(vis, bool)
    arr[~v] = np.nan
    arr.setflags(write=False)
    return arr


def frozen(arr: np.ndarray) -> np.ndarray:
    """Mark ``arr`` read-only and return it (records are immutable)."""
    arr.setflags(write=False)
    return arr


def read_json(path: Path, dataset: str) -> Any:
    """Load a JSON file; a malformed file raises ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{dataset}: malformed JSON in {path}: {err}") from err


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of a text file (CRLF, CR and
    LF all work; BOM dropped)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    return [(n, s.strip()) for n, s in enumerate(text.splitlines(), start=1) if s.strip()]


def image_size(path: Path) -> tuple[int, int] | None:
    """(W, H) from the image header without decoding pixels; None if unreadable/missing."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError):
        return None


def check_images(
    records: Iterable[PairRecord], progress: bool | None = False
) -> list[tuple[str, Path, str]]:
    """Find missing or unreadable images: ``[(pair_id, path, reason), ...]`` in record order.

    Each image is opened with PIL, ``verify()``-ed (structure) and fully decoded (a truncated
    JPEG passes ``verify()`` but fails to decode). Every distinct path is checked once; a bad
    image is reported for each pair using it. ``progress``: a tqdm bar over the pairs (None:
    only on a terminal).
    """
    from PIL import Image
    from tqdm import tqdm

    cache: dict[Path, str | None] = {}

    def reason(path: Path) -> str | None:
        if path not in cache:
            if not path.is_file():
                cache[path] = "missing"
            else:
                try:
                    with Image.open(path) as im:
                        im.verify()
                    with Image.open(path) as im:  # verify() leaves the file unusable
                        im.load()
                    cache[path] = None
                except Exception as err:  # PIL raises many types for corrupt files
                    cache[path] = f"unreadable: {type(err).__name__}: {err}"
        return cache[path]

    bad: list[tuple[str, Path, str]] = []
    disable = None if progress is None else not progress
    for rec in tqdm(records, desc="images", unit="pair", disable=disable, leave=False):
        for path in (rec.src_image, rec.tgt_image):
            why = reason(Path(path))
            if why is not None:
                bad.append((rec.pair_id, Path(path), why))
    return bad
