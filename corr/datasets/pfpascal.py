"""PF-Pascal loader (docs/protocol.md §8).

Layout: ``{split}_pairs_pf_pascal.csv`` with columns ``source_image, target_image, class, XA, YA,
XB, YB`` (the coordinate columns are ``;``-separated lists, one point per entry; image paths are
relative to the folder holding ``PF-dataset-PASCAL/``). ``root`` may be that folder (the CSV
beside ``PF-dataset-PASCAL/`` or inside it) or ``PF-dataset-PASCAL/`` itself.

``class`` is 1-based. If ``classes.json`` (``{"1": "name", ...}``) lies beside the CSV it gives the
mapping; otherwise the 20 Pascal VOC classes in the published order.

Keypoint k is the pair's k-th point; all points are visible (a NaN or negative coordinate, as in
padded copies, marks a point as not visible). T_ref = max(W, H) of the target image, read from
the image header with PIL (no decoding). If the target image cannot be read, ``pck_size`` is NaN,
the size ``(0, 0)`` and ``flags["size_unknown"]`` is True; :func:`corr.datasets.check_images`
reports such pairs, and :func:`corr.metrics.evaluate` refuses them. ``pair_id`` is
``{row:06d}-{src stem}-{trg stem}:{category}`` with the 1-based CSV row, so records sort in CSV
order. No bounding boxes, no flip / geo tables.

The image names are checked with :func:`~.paths.data_path` before any image is opened: each
must stay inside ``root``, also when ``root`` is ``PF-dataset-PASCAL/`` and the names start at
its parent; else :class:`~.paths.DataPathError` names the CSV, its line and the column.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .paths import data_path
from .records import DatasetLayoutError, PairRecord, frozen, image_size, make_kps

__all__ = ["load_pfpascal", "locate_pfpascal", "PASCAL_CLASSES", "PFPASCAL_LAYOUT"]

PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

PFPASCAL_LAYOUT = (
    "  ROOT/{split}_pairs_pf_pascal.csv   (or ROOT/PF-dataset-PASCAL/{split}_pairs_pf_pascal.csv)\n"
    "  ROOT/PF-dataset-PASCAL/JPEGImages/{img}.jpg\n"
    "  ROOT/classes.json  (optional, beside the CSV: class index -> name)\n"
    "  with ROOT the folder holding PF-dataset-PASCAL/ and split test or val"
)
_COLUMNS = ("source_image", "target_image", "class", "XA", "YA", "XB", "YB")
_SPLITS = ("test", "val")


def locate_pfpascal(root: Path, split: str) -> tuple[Path, Path]:
    """(csv path, base folder that image paths are relative to)."""
    if not root.is_dir():
        raise DatasetLayoutError("PF-Pascal", PFPASCAL_LAYOUT, root)
    name = f"{split}_pairs_pf_pascal.csv"
    if root.name == "PF-dataset-PASCAL" and not (root / "PF-dataset-PASCAL").is_dir():
        candidates = [(root / name, root.parent)]
    else:
        candidates = [(root / name, root), (root / "PF-dataset-PASCAL" / name, root)]
    for csv_path, base in candidates:
        if csv_path.is_file():
            return csv_path, base
    raise DatasetLayoutError("PF-Pascal", PFPASCAL_LAYOUT, candidates[0][0])


def _classes(csv_path: Path) -> dict[int, str]:
    path = csv_path.parent / "classes.json"
    if not path.is_file():
        return {i + 1: c for i, c in enumerate(PASCAL_CLASSES)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in data.items()}
    except (json.JSONDecodeError, AttributeError, ValueError) as err:
        raise ValueError(f"PF-Pascal: malformed class mapping {path}: {err}") from err


def _floats(cell: str, where: str) -> list[float]:
    parts = [p.strip() for p in cell.strip().split(";")]
    parts = [p for p in parts if p]
    try:
        return [float(p) for p in parts]
    except ValueError as err:
        raise ValueError(f"PF-Pascal: {where}: bad coordinate list {cell!r}") from err


def load_pfpascal(root: str | Path, split: str = "test") -> list[PairRecord]:
    """Load the PF-Pascal pairs of ``split`` ("test" or "val"), sorted by CSV row.

    Raises DatasetLayoutError if no CSV is found, ValueError for a malformed row.
    """
    if split not in _SPLITS:
        raise ValueError(
            f"PF-Pascal: unknown split {split!r}; use test or val (the train CSV has no keypoints)"
        )
    root = Path(root)
    csv_path, base = locate_pfpascal(root, split)
    classes = _classes(csv_path)
    sizes: dict[Path, tuple[int, int] | None] = {}

    def size_of(path: Path) -> tuple[int, int] | None:
        if path not in sizes:
            sizes[path] = image_size(path)
        return sizes[path]

    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, row) for row in reader]  # (its line in the file, cells)
    if not rows:
        raise ValueError(f"PF-Pascal: empty CSV {csv_path}")
    header = [h.strip() for h in rows[0][1]]
    missing_cols = [c for c in _COLUMNS if c not in header]
    if missing_cols:
        raise ValueError(f"PF-Pascal: {csv_path}: missing columns {missing_cols}; got {header}")
    col = {c: header.index(c) for c in _COLUMNS}
    records: list[PairRecord] = []
    for row_no, (line, row) in enumerate(rows[1:], start=1):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{csv_path.name} row {row_no}"
        if len(row) < len(header):
            raise ValueError(f"PF-Pascal: {where}: {len(row)} columns, expected {len(header)}")
        src_rel, trg_rel = row[col["source_image"]].strip(), row[col["target_image"]].strip()
        try:
            cls = int(float(row[col["class"]]))
            category = classes[cls]
        except (ValueError, KeyError):
            raise ValueError(
                f"PF-Pascal: {where}: unknown class {row[col['class']]!r} "
                f"(known: {sorted(classes)})"
            ) from None
        xa, ya, xb, yb = (_floats(row[col[c]], where) for c in ("XA", "YA", "XB", "YB"))
        if not (len(xa) == len(ya) == len(xb) == len(yb)):
            raise ValueError(
                f"PF-Pascal: {where}: coordinate lists differ in length "
                f"({len(xa)}, {len(ya)}, {len(xb)}, {len(yb)})"
            )
        src_xy = np.column_stack([xa, ya]).astype(np.float64).reshape(-1, 2)
        trg_xy = np.column_stack([xb, yb]).astype(np.float64).reshape(-1, 2)
        src_vis = np.isfinite(src_xy).all(1) & (src_xy >= 0).all(1)
        trg_vis = np.isfinite(trg_xy).all(1) & (trg_xy >= 0).all(1)
        # checked before image_size opens them: inside root even when names start at its parent
        src_path = data_path(
            root, src_rel, file=csv_path, line=line, field="source_image", base=base
        )
        trg_path = data_path(
            root, trg_rel, file=csv_path, line=line, field="target_image", base=base
        )
        src_size, trg_size = size_of(src_path), size_of(trg_path)
        flags: dict = {"csv_row": row_no}
        if trg_size is None or src_size is None:
            flags["size_unknown"] = True
        pck_size = float(max(trg_size)) if trg_size else math.nan
        records.append(
            PairRecord(
                dataset="pfpascal",
                pair_id=f"{row_no:06d}-{Path(src_rel).stem}-{Path(trg_rel).stem}:{category}",
                category=category,
                src_image=src_path,
                tgt_image=trg_path,
                src_kps=make_kps(src_xy, src_vis),
                tgt_kps=make_kps(trg_xy, trg_vis),
                src_vis=frozen(src_vis),
                tgt_vis=frozen(trg_vis),
                pck_size=pck_size,
                src_size=src_size or (0, 0),
                tgt_size=trg_size or (0, 0),
                src_bbox=None,
                tgt_bbox=None,
                flags=flags,
                table_category=category,
            )
        )
    records.sort(key=lambda r: r.pair_id)
    return records
