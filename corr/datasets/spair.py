"""SPair-71k loader (docs/protocol.md §8).

Layout under ``root``::

    JPEGImages/{cat}/{img}.jpg
    ImageAnnotation/{cat}/{img}.json        kps "0".."K-1" -> [x, y] | null, bndbox, image_width/height
    PairAnnotation/{trn,val,test}/{id}-{src}-{trg}:{cat}.json
    Layout/{large,small}/{trn,val,test}.txt  pair stems, one per line (optional; CRLF tolerated)

Keypoints: index k is the category's keypoint id (the key ``str(k)`` of the image annotation's
``kps``). The public release writes the keys "0".."29" for every category (null past the
category's own keypoints), so K = 30 there, like the reference code's padding; the minireal copy
writes only the category's keys. Visibility of *all* K keypoints of each image comes from its ImageAnnotation (the
geometry-aware subset needs the target visibility of every group member). For the ids listed in
the pair file (``kps_ids``, strings or ints), the pair file's coordinates are used and the id is
visible in both images even if an ImageAnnotation says ``null``; disagreements larger than half a
pixel are counted in ``flags["kps_mismatch"]``.

Fallback: when an image's ImageAnnotation is missing, that image's visibility is the pair file's
``kps_ids`` alone (its other keypoints count as not visible), and its size/box come from the pair
file. K is the largest of: the key count of the pair's ImageAnnotations, that of the first
ImageAnnotation of the category (sorted), and ``max(kps_ids) + 1``. Such pairs carry
``flags["missing_annotation"] = ["src"]``, ``["trg"]`` or both.

``pck_size`` (T_ref) = max(x2 - x1, y2 - y1) of the target ``bndbox`` [x1, y1, x2, y2] (pair
file, else ImageAnnotation), in target pixels, as in the reference code.

Names read from the files (a Layout list's pair stems, a pair file's ``category``,
``src_imname`` and ``trg_imname``) are checked with :func:`~.paths.data_path` before any file
is opened: one that leaves ``root`` raises :class:`~.paths.DataPathError` naming the file,
line and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .paths import data_path
from .records import (
    DatasetLayoutError,
    PairRecord,
    frozen,
    make_kps,
    numbered_lines,
    read_json,
)

__all__ = [
    "load_spair",
    "load_spair_pair",
    "listed_pair_path",
    "spair_split",
    "SpairAnnotations",
    "SpairVariant",
    "SPAIR",
    "SPAIR_SPLITS",
    "SPAIR_LAYOUT",
]

SPAIR_SPLITS = {"test": "test", "val": "val", "trn": "trn", "train": "trn"}

SPAIR_LAYOUT = (
    "  ROOT/JPEGImages/{cat}/{img}.jpg\n"
    "  ROOT/ImageAnnotation/{cat}/{img}.json\n"
    "  ROOT/PairAnnotation/{split}/{id}-{src}-{trg}:{cat}.json\n"
    "  ROOT/Layout/{layout}/{split}.txt  (optional list of pair stems)\n"
    "  with ROOT the SPair-71k folder and split one of trn, val, test"
)

_PAIR_FLAGS = ("mirror", "viewpoint_variation", "scale_variation", "truncation", "occlusion")


def spair_split(split: str) -> str:
    """The PairAnnotation folder name of ``split`` ("train" is "trn"); ValueError if unknown."""
    try:
        return SPAIR_SPLITS[split]
    except KeyError:
        raise ValueError(
            f"SPair-71k: unknown split {split!r}; use one of test, val, trn (or train)"
        ) from None


def listed_pair_path(root: Path, split: str, stem: str, layout_file: Path, line: int) -> Path:
    """``root/PairAnnotation/{split}/{stem}.json`` for line ``line`` of a Layout list, the stem
    checked to stay inside ``root`` before anything is opened (:func:`~.paths.data_path`)."""
    path = data_path(
        root,
        stem,
        file=layout_file,
        line=line,
        field="pair stem",
        under=Path("PairAnnotation", split),
    )
    return path if path.name.endswith(".json") else path.with_name(path.name + ".json")


@dataclass(frozen=True)
class SpairVariant:
    """The folders a set of SPair-71k-format annotations lives in: SPair-71k itself, or
    SPair-U's relabelled test pairs (``Extra*`` folders beside SPair-71k's own)."""

    dataset: str = "spair"
    title: str = "SPair-71k"
    pairs: str = "PairAnnotation"
    images: str = "ImageAnnotation"
    layout: str = SPAIR_LAYOUT


SPAIR = SpairVariant()


def _pair_files(
    root: Path, split: str, layout: str | None, variant: SpairVariant = SPAIR
) -> list[Path]:
    """The pair JSON files of a split: from ``Layout/{layout}/{split}.txt`` when present."""
    pair_dir = root / variant.pairs / split
    for p in (root, root / variant.pairs, pair_dir):
        if not p.is_dir():
            raise DatasetLayoutError(variant.title, variant.layout, p)
    layout_file = root / "Layout" / layout / f"{split}.txt" if layout else None
    if layout_file is None or not layout_file.is_file():
        return sorted(pair_dir.glob("*.json"))
    files = []
    for line, stem in numbered_lines(layout_file):
        path = listed_pair_path(root, split, stem, layout_file, line)
        if not path.is_file():
            raise DatasetLayoutError(
                "SPair-71k", SPAIR_LAYOUT, path, hint=f"(listed in {layout_file})"
            )
        files.append(path)
    return list(dict.fromkeys(files))  # a stem listed twice is one pair


class SpairAnnotations:
    """Cache of ImageAnnotation files (many pairs share an image), by their checked paths."""

    def __init__(self, title: str = "SPair-71k") -> None:
        self.title = title
        self._img: dict[Path, dict | None] = {}
        self._cat_k: dict[Path, int] = {}

    def image(self, path: Path) -> dict | None:
        """The ImageAnnotation at ``path`` (from :func:`~.paths.data_path`); None if absent."""
        if path not in self._img:
            self._img[path] = read_json(path, self.title) if path.is_file() else None
        return self._img[path]

    def category_k(self, folder: Path) -> int:
        """Key count of the first (sorted) ImageAnnotation in a category's ``folder``; 0 if none."""
        if folder not in self._cat_k:
            first = min(folder.glob("*.json"), default=None) if folder.is_dir() else None
            self._cat_k[folder] = _num_kps(read_json(first, self.title)) if first else 0
        return self._cat_k[folder]


def _num_kps(ann: dict) -> int:
    kps = ann.get("kps") or {}
    return max((int(k) + 1 for k in kps), default=0)


def _image_kps(ann: dict | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) coordinates (NaN where null) and (K,) visibility from an ImageAnnotation."""
    xy = np.full((k, 2), np.nan)
    vis = np.zeros(k, bool)
    if ann is not None:
        for key, pt in (ann.get("kps") or {}).items():
            if pt is None:
                continue
            i = int(key)
            xy[i] = (float(pt[0]), float(pt[1]))
            vis[i] = True
    return xy, vis


def _bbox(value) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in value[:4])
    return (x1, y1, x2, y2)


def _size(imsize, ann: dict | None) -> tuple[int, int]:
    if imsize is not None:
        return int(imsize[0]), int(imsize[1])
    if ann is not None:
        return int(ann["image_width"]), int(ann["image_height"])
    return (0, 0)


def load_spair_pair(
    path: Path, root: Path, anns: SpairAnnotations, variant: SpairVariant = SPAIR
) -> PairRecord:
    """One pair file of the SPair-71k folder ``root`` as a record (``anns``: the shared cache;
    ``variant``: which annotation folders, SPair-71k's or SPair-U's)."""
    data = read_json(path, variant.title)
    try:
        cat, src_name, trg_name = data["category"], data["src_imname"], data["trg_imname"]
        ids = [int(i) for i in data.get("kps_ids") or []]
        pair_src = data.get("src_kps") or []
        pair_trg = data.get("trg_kps") or []
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{variant.title}: bad pair file {path}: {err!r}") from err
    if not (len(ids) == len(pair_src) == len(pair_trg)):
        raise ValueError(
            f"{variant.title}: {path}: kps_ids ({len(ids)}), src_kps ({len(pair_src)}) and "
            f"trg_kps ({len(pair_trg)}) differ in length"
        )
    # every name that becomes a path is checked before any file is opened
    cat_dir = data_path(root, cat, file=path, field="category", under=variant.images)
    images = Path("JPEGImages", cat_dir.relative_to(root / variant.images))
    src_image = data_path(root, src_name, file=path, field="src_imname", under=images)
    trg_image = data_path(root, trg_name, file=path, field="trg_imname", under=images)
    src_ann = anns.image(cat_dir / f"{src_image.stem}.json")
    trg_ann = anns.image(cat_dir / f"{trg_image.stem}.json")
    k = max(
        anns.category_k(cat_dir),
        _num_kps(src_ann) if src_ann else 0,
        _num_kps(trg_ann) if trg_ann else 0,
        max(ids, default=-1) + 1,
    )
    src_xy, src_vis = _image_kps(src_ann, k)
    trg_xy, trg_vis = _image_kps(trg_ann, k)
    mismatch = 0
    for i, ps, pt in zip(ids, pair_src, pair_trg, strict=True):
        if ps is None or pt is None:  # a null in the pair file: not a mutual keypoint
            continue
        for xy, vis, p, ann in ((src_xy, src_vis, ps, src_ann), (trg_xy, trg_vis, pt, trg_ann)):
            new = (float(p[0]), float(p[1]))
            if ann is not None and (not vis[i] or np.hypot(*(xy[i] - new)) > 0.5):
                mismatch += 1
            xy[i] = new
            vis[i] = True
    flags: dict = {f: data[f] for f in _PAIR_FLAGS if f in data}
    for f in ("src_pose", "trg_pose"):
        if f in data:
            flags[f] = data[f]
    missing = [n for n, a in (("src", src_ann), ("trg", trg_ann)) if a is None]
    if missing:
        flags["missing_annotation"] = missing
    if mismatch:
        flags["kps_mismatch"] = mismatch
    src_bbox = _bbox(data.get("src_bndbox", src_ann.get("bndbox") if src_ann else None))
    trg_bbox = _bbox(data.get("trg_bndbox", trg_ann.get("bndbox") if trg_ann else None))
    if trg_bbox is None:
        raise ValueError(f"{variant.title}: {path}: no target bndbox (needed for T_ref)")
    pck_size = max(trg_bbox[2] - trg_bbox[0], trg_bbox[3] - trg_bbox[1])
    return PairRecord(
        dataset=variant.dataset,
        pair_id=path.stem,
        category=cat,
        src_image=src_image,
        tgt_image=trg_image,
        src_kps=make_kps(src_xy, src_vis),
        tgt_kps=make_kps(trg_xy, trg_vis),
        src_vis=frozen(src_vis),
        tgt_vis=frozen(trg_vis),
        pck_size=float(pck_size),
        src_size=_size(data.get("src_imsize"), src_ann),
        tgt_size=_size(data.get("trg_imsize"), trg_ann),
        src_bbox=src_bbox,
        tgt_bbox=trg_bbox,
        flags=flags,
        table_category=cat,
    )


def load_spair(
    root: str | Path,
    split: str = "test",
    layout: str | None = "large",
    variant: SpairVariant = SPAIR,
) -> list[PairRecord]:
    """Load the SPair-71k pairs of ``split`` ("test", "val", "trn"; "train" = "trn").

    Uses ``Layout/{layout}/{split}.txt`` when it exists (pass ``layout=None`` to ignore it),
    otherwise every ``PairAnnotation/{split}/*.json``. Records are sorted by ``pair_id`` (the
    pair file stem, which starts with the zero-padded pair number). Raises DatasetLayoutError if
    the layout is wrong, ValueError for a malformed file. ``variant``: the annotation folders
    (:data:`SPAIR`; SPair-U's in :mod:`corr.datasets.spair_u`).
    """
    root = Path(root)
    split = spair_split(split)
    anns = SpairAnnotations(variant.title)
    files = _pair_files(root, split, layout, variant)
    records = [load_spair_pair(p, root, anns, variant) for p in files]
    records.sort(key=lambda r: r.pair_id)
    return records
