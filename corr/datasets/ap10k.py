"""AP-10K correspondence benchmark: the prepared folder and its loader (docs/protocol.md §8).

Build the folder from the raw release with
``python -m corr.datasets.ap10k build --src RAW --out DIR [--link-images]``
(:func:`build_ap10k`, in :mod:`corr.datasets.ap10k_build`; the raw release is read by
:mod:`corr.datasets.ap10k_raw`, the split and pair rules are in :mod:`corr.datasets.ap10k_pairs`).

Prepared output (what :func:`load_ap10k` reads)::

    DIR/ImageAnnotation/{family}/{species}/{id:012d}.json
    DIR/JPEGImages/{family}/{species}/{id:012d}.jpg
    DIR/PairAnnotation/{split}/{src:012d}-{trg:012d}:{name}.json
    DIR/manifest.json

with ``split`` one of ``test``, ``test_cross_species``, ``test_cross_family`` and the same three
for ``val``; ``name`` is the species (intra-species), the family (cross-species) or ``all``
(cross-family), as in GeoAware-SC; it is also the record's ``category``.

ImageAnnotation schema: ``image_id, annotation_id, file_name`` (raw), ``image`` (path of the copied
image relative to DIR), ``width, height, bbox`` ([x, y, w, h] as in COCO), ``keypoints`` (17
[x, y, v] triples), ``num_keypoints`` (as stored in the release), ``category_id, species, family,
split``.

PairAnnotation schema (SPair-like, self-contained): ``pair_id``/``filename`` (the stem),
``category``, ``subset``, ``split``, ``src_imname``/``trg_imname``, ``src_image``/``trg_image`` and
``src_json_path``/``trg_json_path`` (relative to DIR), ``src_imsize``/``trg_imsize`` ([W, H]; no
channel count, unlike SPair), ``src_bbox``/``trg_bbox`` (COCO [x, y, w, h]),
``src_bndbox``/``trg_bndbox`` ([x1, y1, x2, y2]), ``src_kps``/``trg_kps`` (17 [x, y, v]),
``kps_ids`` (the mutually visible ids as strings, SPair style), ``src_species``/``trg_species``,
``src_family``/``trg_family``.

Loader: keypoint k is COCO keypoint k (K = 17); visible iff ``v > 0`` (the release uses 0/2).
T_ref = max(w, h) of the target COCO box. ``table_category`` is ``"all"``. A pair file without
keypoints (e.g. built by other tools) is completed from the ImageAnnotation it names. The
names ``src/trg_json_path`` and ``src/trg_image`` of a pair file are checked with
:func:`~.paths.data_path` before any file is opened (:class:`~.paths.DataPathError` names the
file and field of one that leaves the folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .ap10k_build import build_ap10k, main
from .ap10k_pairs import AP10K_SPLITS, AP10K_SUBSETS
from .ap10k_raw import NUM_KEYPOINTS, crowd_list
from .paths import data_path
from .records import DatasetLayoutError, PairRecord, frozen, make_kps, read_json

__all__ = [
    "load_ap10k",
    "build_ap10k",
    "crowd_list",
    "AP10K_SUBSETS",
    "AP10K_LAYOUT",
    "NUM_KEYPOINTS",
    "main",
]

AP10K_LAYOUT = (
    "  ROOT/PairAnnotation/{test,test_cross_species,test_cross_family,val,...}/"
    "{src}-{trg}:{name}.json\n"
    "  ROOT/ImageAnnotation/{family}/{species}/{id:012d}.json\n"
    "  ROOT/JPEGImages/{family}/{species}/{id:012d}.jpg\n"
    "  (build it from the raw release with: python -m corr.datasets.ap10k build --src RAW --out ROOT)"
)


def _split_dir(subset: str, split: str) -> str:
    if subset not in AP10K_SUBSETS:
        raise ValueError(f"AP-10K: unknown subset {subset!r}; use one of {list(AP10K_SUBSETS)}")
    if split not in AP10K_SPLITS:
        raise ValueError(f"AP-10K: unknown split {split!r}; use test or val")
    return split + AP10K_SUBSETS[subset]


def _named_paths(data: dict, side: str, root: Path, file: Path) -> tuple[Path | None, Path | None]:
    """(ImageAnnotation, image) paths a pair file names for ``side``, checked before any open.

    ``{side}_json_path`` may carry a prefix before ``ImageAnnotation/`` (such as
    ``data/ap-10k/``), which is dropped; without ``{side}_image`` the image is the annotation's
    path under ``JPEGImages/`` with ``.jpg``. Either is None when the pair file names neither.
    """
    field = f"{side}_json_path"
    ann_path = None
    name = data.get(field)
    if name:
        if isinstance(name, str):
            i = name.replace("\\", "/").find("ImageAnnotation/")
            name = name[i:] if i >= 0 else name
        ann_path = data_path(root, name, file=file, field=field)
    image = data.get(f"{side}_image")
    if image:
        return ann_path, data_path(root, image, file=file, field=f"{side}_image")
    if ann_path is None:
        return None, None
    parts = [
        "JPEGImages" if p == "ImageAnnotation" else p for p in ann_path.relative_to(root).parts
    ]
    return ann_path, (root / Path(*parts)).with_suffix(".jpg")


def _triples(kps: Any, where: str) -> np.ndarray:
    arr = np.asarray(kps, dtype=np.float64).reshape(-1)
    if arr.size != 3 * NUM_KEYPOINTS:
        raise ValueError(f"AP-10K: {where}: expected {NUM_KEYPOINTS} [x, y, v] triples")
    return arr.reshape(NUM_KEYPOINTS, 3)


def _coco_box(box: Any, where: str) -> tuple[float, float, float, float]:
    if box is None or len(box) != 4:
        raise ValueError(f"AP-10K: {where}: expected a COCO box [x, y, w, h], got {box!r}")
    x, y, w, h = (float(v) for v in box)
    return x, y, w, h


def _side(data: dict, side: str, named: tuple, cache: dict, where: str) -> dict:
    """One image's fields from a pair file, completed from its ImageAnnotation when needed;
    ``named``: the checked (annotation, image) paths of :func:`_named_paths`."""
    ann_path, img_path = named
    ann = None

    def annotation() -> dict:
        nonlocal ann
        if ann is None:
            if ann_path is None:
                raise ValueError(f"AP-10K: {where}: no {side}_kps and no {side}_json_path")
            if ann_path not in cache:
                if not ann_path.is_file():
                    raise DatasetLayoutError("AP-10K", AP10K_LAYOUT, ann_path)
                cache[ann_path] = read_json(ann_path, "AP-10K")
            ann = cache[ann_path]
        return ann

    if img_path is None:
        raise ValueError(f"AP-10K: {where}: no {side}_image")
    kps = data.get(f"{side}_kps")
    if kps is None or np.asarray(kps, dtype=object).size != 3 * NUM_KEYPOINTS:
        kps = annotation()["keypoints"]
    box = data.get(f"{side}_bbox")
    if box is None:
        box = annotation()["bbox"]
    size = data.get(f"{side}_imsize")
    if size is None:
        size = (annotation()["width"], annotation()["height"])
    return {
        "kps": _triples(kps, where),
        "bbox": _coco_box(box, where),
        "size": (int(size[0]), int(size[1])),
        "image": img_path,
    }


def load_ap10k(
    root: str | Path, subset: str = "intra-species", split: str = "test"
) -> list[PairRecord]:
    """Load a prepared AP-10K correspondence split; records sorted by ``pair_id``.

    ``subset``: "intra-species" (PairAnnotation/test), "cross-species" (test_cross_species),
    "cross-family" (test_cross_family); ``split``: "test" or "val".
    """
    root = Path(root)
    pair_dir = root / "PairAnnotation" / _split_dir(subset, split)
    for p in (root, root / "PairAnnotation", pair_dir):
        if not p.is_dir():
            raise DatasetLayoutError("AP-10K", AP10K_LAYOUT, p)
    cache: dict[Path, dict] = {}
    records = []
    for path in sorted(pair_dir.glob("*.json")):
        data = read_json(path, "AP-10K")
        where = str(path)
        named = {side: _named_paths(data, side, root, path) for side in ("src", "trg")}
        src = _side(data, "src", named["src"], cache, where)
        trg = _side(data, "trg", named["trg"], cache, where)
        category = str(data.get("category") or path.stem.rsplit(":", 1)[-1])
        src_vis = src["kps"][:, 2] > 0
        trg_vis = trg["kps"][:, 2] > 0
        x, y, w, h = trg["bbox"]
        sx, sy, sw, sh = src["bbox"]
        flags = {"subset": subset, "split": split}
        for key in ("src_species", "trg_species", "src_family", "trg_family"):
            if key in data:
                flags[key] = data[key]
        records.append(
            PairRecord(
                dataset="ap10k",
                pair_id=path.stem,
                category=category,
                src_image=src["image"],
                tgt_image=trg["image"],
                src_kps=make_kps(src["kps"][:, :2], src_vis),
                tgt_kps=make_kps(trg["kps"][:, :2], trg_vis),
                src_vis=frozen(src_vis),
                tgt_vis=frozen(trg_vis),
                pck_size=float(max(w, h)),
                src_size=src["size"],
                tgt_size=trg["size"],
                src_bbox=(sx, sy, sx + sw, sy + sh),
                tgt_bbox=(x, y, x + w, y + h),
                flags=flags,
                table_category="all",
            )
        )
    return records


if __name__ == "__main__":
    raise SystemExit(main())
