"""PF-Willow loader (Ham et al., Proposal Flow, CVPR 2016; 900 test pairs, 4 object classes).

Layout: ``test_pairs_pf.csv`` (the pair list of CNNGeometric / WeakAlign, as DHPF, CATs and
the later zero-shot work use it) beside or inside ``PF-dataset/`` (ProposalFlow's
``PF-dataset.zip``). The CSV's header is ``imageA, imageB, XA1..XA10, YA1..YA10, XB1..XB10,
YB1..YB10``: two image names relative to the folder holding ``PF-dataset/`` (they start with
``PF-dataset/``), then the ten points of each image, all x first, then all y (the column
order of ignacio-rocco/weakalign@e09d0eb data/pf_dataset.py, which reads columns 2:22 and
22:42 as two ``(2, 10)`` blocks; juhongm999/dhpf data/pfwillow.py reads them the same way).
``root`` may be the folder holding ``PF-dataset/`` or ``PF-dataset/`` itself.

Keypoint k is the pair's k-th point; every point is visible (a NaN or negative coordinate
marks one that is not). ``category`` is the object class (``car``, ``duck``, ``motorbike``,
``winebottle``: the image folder's name before ``(``); the folder itself (``car(G)``, ...,
ProposalFlow's sub-classes) is ``flags["subclass"]``.

T_ref (``pck_size``) = max(w, h) of the tight box around the *target* image's keypoints, in
target pixels: PCK@alpha_bbox as DHPF's ``get_pckthres`` ('bbox') and DIFT's PF-Willow figures
use it (CNNGeometric and WeakAlign took the box of the source's points instead). ``tgt_bbox`` is
that box. Image sizes come from the image headers (PIL, no decoding); an unreadable image gives
size ``(0, 0)`` and ``flags["size_unknown"]``. ``pair_id`` is ``{row:04d}-{src stem}-{trg
stem}:{category}`` with the 1-based CSV row, so records sort in CSV order.

Image names are checked with :func:`~.paths.data_path` before any image is opened: each must
stay inside ``root``; else :class:`~.paths.DataPathError` names the CSV, its line and column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .paths import data_path
from .records import DatasetLayoutError, PairRecord, frozen, image_size, make_kps

__all__ = ["load_pfwillow", "locate_pfwillow", "PFWILLOW_LAYOUT", "PFWILLOW_CSV"]

PFWILLOW_CSV = "test_pairs_pf.csv"
PFWILLOW_LAYOUT = (
    "  ROOT/test_pairs_pf.csv   (or ROOT/PF-dataset/test_pairs_pf.csv)\n"
    "  ROOT/PF-dataset/{class}({subclass})/{img}.png\n"
    "  with ROOT the folder holding PF-dataset/; the split is test (the only one)"
)
_IMAGES = "PF-dataset"


def locate_pfwillow(root: Path) -> tuple[Path, Path]:
    """(csv path, base folder the image names are relative to)."""
    if not root.is_dir():
        raise DatasetLayoutError("PF-Willow", PFWILLOW_LAYOUT, root)
    if root.name == _IMAGES and not (root / _IMAGES).is_dir():
        candidates = [(root / PFWILLOW_CSV, root.parent)]
    else:
        candidates = [(root / PFWILLOW_CSV, root), (root / _IMAGES / PFWILLOW_CSV, root)]
    for csv_path, base in candidates:
        if csv_path.is_file():
            return csv_path, base
    raise DatasetLayoutError("PF-Willow", PFWILLOW_LAYOUT, candidates[0][0])


def _columns(header: list[str], csv_path: Path) -> tuple[int, dict[str, int]]:
    """The number of points per image and each needed column's index; ValueError if a column
    of the published header is missing."""
    col = {h.strip(): i for i, h in enumerate(header)}
    n = 0
    while f"XA{n + 1}" in col:
        n += 1
    need = ["imageA", "imageB"] + [
        f"{c}{i}" for c in ("XA", "YA", "XB", "YB") for i in range(1, n + 1)
    ]
    missing = [c for c in need if c not in col]
    if n == 0 or missing:
        raise ValueError(
            f"PF-Willow: {csv_path}: not the published pair list (header imageA, imageB, "
            f"XA1.., YA1.., XB1.., YB1..); missing {missing or ['XA1']}, got {header[:6]}..."
        )
    return n, col


def load_pfwillow(root: str | Path, split: str = "test") -> list[PairRecord]:
    """Load the PF-Willow pairs (split "test", the only one), sorted by CSV row.

    Raises DatasetLayoutError if no CSV is found, ValueError for a malformed row.
    """
    if split != "test":
        raise ValueError(f"PF-Willow: unknown split {split!r}; it has only test")
    root = Path(root)
    csv_path, base = locate_pfwillow(root)
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise ValueError(f"PF-Willow: empty CSV {csv_path}")
    n, col = _columns(rows[0][1], csv_path)
    sizes: dict[Path, tuple[int, int] | None] = {}
    records: list[PairRecord] = []
    for row_no, (line, row) in enumerate(rows[1:], start=1):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{csv_path.name} row {row_no} (line {line})"
        if len(row) < len(rows[0][1]):
            raise ValueError(f"PF-Willow: {where}: {len(row)} columns, expected {len(rows[0][1])}")
        try:
            xy = {
                c: [float(row[col[f"{c}{i}"]]) for i in range(1, n + 1)]
                for c in ("XA", "YA", "XB", "YB")
            }
        except ValueError as err:
            raise ValueError(f"PF-Willow: {where}: bad coordinate ({err})") from None
        src_xy = np.column_stack([xy["XA"], xy["YA"]])
        trg_xy = np.column_stack([xy["XB"], xy["YB"]])
        src_vis = np.isfinite(src_xy).all(1) & (src_xy >= 0).all(1)
        trg_vis = np.isfinite(trg_xy).all(1) & (trg_xy >= 0).all(1)
        paths = []
        for field in ("imageA", "imageB"):
            paths.append(
                data_path(
                    root, row[col[field]].strip(), file=csv_path, line=line, field=field, base=base
                )
            )
        src_path, trg_path = paths
        subclass = src_path.parent.name
        category = subclass.split("(")[0] or subclass
        for p in paths:
            if p not in sizes:
                sizes[p] = image_size(p)
        flags: dict = {"csv_row": row_no, "subclass": subclass}
        if sizes[src_path] is None or sizes[trg_path] is None:
            flags["size_unknown"] = True
        vis = trg_xy[trg_vis]
        if len(vis):
            x1, y1 = vis.min(0)
            x2, y2 = vis.max(0)
            tgt_bbox = (float(x1), float(y1), float(x2), float(y2))
            pck_size = float(max(x2 - x1, y2 - y1))
        else:
            tgt_bbox, pck_size = None, math.nan
        records.append(
            PairRecord(
                dataset="pfwillow",
                pair_id=f"{row_no:04d}-{src_path.stem}-{trg_path.stem}:{category}",
                category=category,
                src_image=src_path,
                tgt_image=trg_path,
                src_kps=make_kps(src_xy, src_vis),
                tgt_kps=make_kps(trg_xy, trg_vis),
                src_vis=frozen(src_vis),
                tgt_vis=frozen(trg_vis),
                pck_size=pck_size,
                src_size=sizes[src_path] or (0, 0),
                tgt_size=sizes[trg_path] or (0, 0),
                src_bbox=None,
                tgt_bbox=tgt_bbox,
                flags=flags,
                table_category=category,
            )
        )
    records.sort(key=lambda r: r.pair_id)
    return records
