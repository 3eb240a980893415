"""AP-10K correspondence benchmark: loader and builder (docs/protocol.md §8).

Run the builder as ``python -m corr.datasets.ap10k build --src RAW --out DIR [--link-images]``.

Raw input (the COCO-style AP-10K release)::

    RAW/annotations/ap10k-{train,val,test}-split1.json
    RAW/data/{file_name}

Prepared output (what :func:`load_ap10k` reads)::

    DIR/ImageAnnotation/{family}/{species}/{id:012d}.json
    DIR/JPEGImages/{family}/{species}/{id:012d}.jpg
    DIR/PairAnnotation/{split}/{src:012d}-{trg:012d}:{name}.json
    DIR/manifest.json

with ``split`` one of ``test``, ``test_cross_species``, ``test_cross_family`` and the same three
for ``val``; ``name`` is the species (intra-species), the family (cross-species) or ``all``
(cross-family), as in GeoAware-SC; it is also the record's ``category``.

Builder rules: GeoAware-SC's ``prepare_ap10k.ipynb`` (commit in :data:`REFERENCE`), replayed
call for call. The one deliberate difference: every folder listing (families, species, image
annotation files) is taken in sorted name order where the notebook used ``os.listdir`` order,
which is not reproducible across file systems.

* The three split-1 files are merged in the notebook's order (train, test, val; images and
  categories by id, a conflicting duplicate is an error). Species = COCO category ``name``,
  family = its ``supercategory``; each species is a folder ``family/species``.
* An image's "first annotation" is the first one listed for it in the merged files (the notebook
  keeps the first annotation per ``image_id``); it gives the species, box and keypoints.
* An image is dropped if it has no annotation, if its stem (``{id:012d}``) is in the reference's
  crowd list (``corr/tables/ap10k_is_crowd.txt``, its source in the file's first line; the COCO
  ``iscrowd`` flag is not used), else if the first annotation's stored ``num_keypoints`` is below
  3. Drop counts go to the manifest.
* Each species' remaining images, listed by file name (``{id:012d}.json``, i.e. by id), give the
  splits: the last min(30, n) are ``test``, the min(20, n - 30) before them ``val``, the rest
  ``trn``.
* A pair needs ``sum_k (v_src / 2) * (v_trg / 2) >= 3`` (the notebook's rule; with the release's
  v in {0, 2} that is 3 mutually visible keypoints).
* Pairs are drawn by three cells, each starting from ``random.seed(42)``; the builder uses a
  private ``random.Random(42)`` per cell making the same calls in the same order:
  - intra-species, splits trn, test, val in turn; per species folder: ``shuffle`` the list, take
    ``itertools.combinations`` of the shuffled list (src = earlier), keep the candidates, then
    ``sample(candidates, min(cap, len))`` when that is > 0, with cap 50 x images for trn and
    every candidate for test and val (so test/val keep all, oriented by the shuffle). trn pairs
    are replayed for the random state only and not written (the toolkit is zero-shot);
  - cross-species, splits val then test; per family with more than one species folder: for each
    species pair (folder order) one ``random()`` per element of the product of their lists (the
    notebook draws it to swap the pair but never uses the swap), then ``sample(candidates,
    min(cap, len))`` with cap 400 (val) / 900 (test); src is from the earlier species;
  - cross-family, splits test then val; per family pair (folder order), the product of the two
    families' lists (species lists concatenated in folder order), then ``sample(candidates,
    min(cap, len))`` with cap 30 (test) / 20 (val); src is from the earlier family.
* Pair files are written for ``test`` and ``val`` (no ``trn`` pairs: the toolkit is zero-shot).
* Images are copied (``--copy-images``, default) or symlinked (``--link-images``); the output file
  keeps the name ``{id:012d}`` and the source suffix (``.jpeg`` becomes ``.jpg``).
* All files are written atomically, JSON with 2-space indentation, so a build is byte-identical
  whatever the file system listing order or the order of images and categories in the input
  JSON (the order of an image's annotations matters: it decides the first). A rebuild into the same
  folder removes stale files of the builder's own patterns from its three subfolders;
  ``manifest.json`` is removed first and written last, after :func:`os.sync` (the thousands of
  small files are not each ``fsync``-ed), so its presence marks a complete build on disk.

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
keypoints (e.g. built by other tools) is completed from the ImageAnnotation it names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .records import DatasetLayoutError, PairRecord, frozen, inside, make_kps, read_json

logger = logging.getLogger(__name__)

__all__ = ["load_ap10k", "build_ap10k", "crowd_list", "AP10K_SUBSETS", "NUM_KEYPOINTS", "main"]

NUM_KEYPOINTS = 17
AP10K_SUBSETS = {
    "intra-species": "",
    "cross-species": "_cross_species",
    "cross-family": "_cross_family",
}
_SPLITS = ("test", "val")
SEED = 42
N_TEST, N_VAL = 30, 20
MIN_KEYPOINTS = 3
TRN_PAIRS_PER_IMAGE = 50  # the reference's trn cap, 50 x images of the species
# pairs kept per family (cross-species) and per family pair (cross-family), as in the reference
CAPS = {
    "test": {"cross-species": 900, "cross-family": 30},
    "val": {"cross-species": 400, "cross-family": 20},
}
CROWD_TABLE = "tables/ap10k_is_crowd.txt"
REFERENCE = {
    "repository": "Junyi42/GeoAware-SC",
    "commit": "99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72",
    "path": "prepare_ap10k.ipynb",
}
BUILDER_VERSION = 2

_LAYOUT = (
    "  ROOT/PairAnnotation/{test,test_cross_species,test_cross_family,val,...}/"
    "{src}-{trg}:{name}.json\n"
    "  ROOT/ImageAnnotation/{family}/{species}/{id:012d}.json\n"
    "  ROOT/JPEGImages/{family}/{species}/{id:012d}.jpg\n"
    "  (build it from the raw release with: python -m corr.datasets.ap10k build --src RAW --out ROOT)"
)
_RAW_LAYOUT = (
    "  RAW/annotations/ap10k-{train,val,test}-split1.json\n  RAW/data/{file_name}  (the images)"
)
# the reference's merge order (it decides which annotation is an image's first)
_RAW_FILES = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")


# ----------------------------------------------------------------------------------- loader


def _split_dir(subset: str, split: str) -> str:
    if subset not in AP10K_SUBSETS:
        raise ValueError(f"AP-10K: unknown subset {subset!r}; use one of {list(AP10K_SUBSETS)}")
    if split not in _SPLITS:
        raise ValueError(f"AP-10K: unknown split {split!r}; use test or val")
    return split + AP10K_SUBSETS[subset]


def _rel_under(root: Path, path: str, anchor: str, where: str = "AP-10K") -> Path:
    """Resolve a stored path relative to ``root`` (also paths such as data/ap-10k/{anchor}/...);
    a path that would leave ``root`` is refused, naming ``where`` it came from."""
    p = path.replace("\\", "/")
    i = p.find(anchor + "/")
    return inside(root, p[i:] if i >= 0 else p, where)


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


def _side(data: dict, side: str, root: Path, cache: dict, where: str) -> dict:
    """One image's fields from a pair file, completed from its ImageAnnotation when needed."""
    ann = None

    def annotation() -> dict:
        nonlocal ann
        if ann is None:
            jp = data.get(f"{side}_json_path")
            if not jp:
                raise ValueError(f"AP-10K: {where}: no {side}_kps and no {side}_json_path")
            path = _rel_under(root, jp, "ImageAnnotation", f"AP-10K: {where}")
            if path not in cache:
                if not path.is_file():
                    raise DatasetLayoutError("AP-10K", _LAYOUT, path)
                cache[path] = read_json(path, "AP-10K")
            ann = cache[path]
        return ann

    kps = data.get(f"{side}_kps")
    if kps is None or np.asarray(kps, dtype=object).size != 3 * NUM_KEYPOINTS:
        kps = annotation()["keypoints"]
    box = data.get(f"{side}_bbox")
    if box is None:
        box = annotation()["bbox"]
    size = data.get(f"{side}_imsize")
    if size is None:
        size = (annotation()["width"], annotation()["height"])
    image = data.get(f"{side}_image")
    if image:
        img_path = inside(root, image, f"AP-10K: {where}: {side}_image")
    elif data.get(f"{side}_json_path"):
        rel = _rel_under(Path(), data[f"{side}_json_path"], "ImageAnnotation", f"AP-10K: {where}")
        parts = ["JPEGImages" if part == "ImageAnnotation" else part for part in rel.parts]
        img_path = (root / Path(*parts)).with_suffix(".jpg")
    else:
        raise ValueError(f"AP-10K: {where}: no {side}_image")
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
            raise DatasetLayoutError("AP-10K", _LAYOUT, p)
    cache: dict[Path, dict] = {}
    records = []
    for path in sorted(pair_dir.glob("*.json")):
        data = read_json(path, "AP-10K")
        where = str(path)
        src = _side(data, "src", root, cache, where)
        trg = _side(data, "trg", root, cache, where)
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


# ---------------------------------------------------------------------------------- builder


@dataclass(frozen=True)
class _Image:
    id: int
    file_name: str
    width: int
    height: int
    ann_id: Any
    bbox: list
    keypoints: list  # 17 [x, y, v]
    num_keypoints: Any  # as stored in the COCO annotation
    category_id: int
    species: str
    family: str

    @property
    def stem(self) -> str:
        return f"{self.id:012d}"

    @property
    def listing_name(self) -> str:
        """The ImageAnnotation file name the reference lists (``str(id).zfill(17)`` of id.json)."""
        return f"{self.id}.json".zfill(17)

    @property
    def folder(self) -> tuple[str, str]:
        return (self.family, self.species)

    @property
    def vis(self) -> np.ndarray:
        return np.array([kp[2] > 0 for kp in self.keypoints], bool)


def _safe(name: str) -> str:
    """A species/family name usable as one path component."""
    out = str(name).replace("/", "_").replace("\\", "_").replace(":", "_")
    return out if out not in ("", ".", "..") else f"_{out}_"


def crowd_list() -> frozenset[str]:
    """Image stems (``{id:012d}``) the reference drops as crowd (``corr/tables/ap10k_is_crowd.txt``).

    The file is GeoAware-SC's ``data/ap-10k_is_crowd.txt`` (commit in :data:`REFERENCE`) with one
    header comment line naming that source.
    """
    text = resources.files("corr").joinpath(CROWD_TABLE).read_text(encoding="utf-8")
    return frozenset(
        s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")
    )


def _read_raw(src: Path) -> tuple[dict, dict, dict]:
    """Merged (categories by id, images by id, annotations by image id) of the split-1 files.

    Annotations keep the reference's merge order: the train, test, val files, each in its own
    listing order.
    """
    ann_dir = src / "annotations"
    for p in (src, ann_dir, *(ann_dir / f for f in _RAW_FILES)):
        if not p.exists():
            raise DatasetLayoutError("AP-10K raw release", _RAW_LAYOUT, p)
    cats: dict[int, dict] = {}
    images: dict[int, dict] = {}
    anns: dict[int, list[dict]] = defaultdict(list)
    for fname in _RAW_FILES:
        data = read_json(ann_dir / fname, "AP-10K")
        for c in data.get("categories", []):
            c = {
                "id": int(c["id"]),
                "name": c["name"],
                "supercategory": c.get("supercategory", c["name"]),
            }
            if cats.setdefault(c["id"], c) != c:
                raise ValueError(f"AP-10K: category {c['id']} differs between files ({fname})")
        for im in data.get("images", []):
            missing = [k for k in ("id", "file_name", "width", "height") if k not in im]
            if missing:
                raise ValueError(
                    f"AP-10K raw release: {ann_dir / fname}: image {im.get('id', '?')} "
                    f"({im.get('file_name', 'no file_name')}) has no {', '.join(missing)}; every "
                    "image entry needs id, file_name, width and height (COCO format): restore "
                    "the original annotation file"
                )
            iid = int(im["id"])
            if images.setdefault(iid, im) != im:
                raise ValueError(f"AP-10K: image {iid} differs between files ({fname})")
        for a in data.get("annotations", []):
            anns[int(a["image_id"])].append(a)
    return cats, images, anns


def _select_images(
    cats: dict, images: dict, anns: dict
) -> tuple[list[_Image], Counter, set[tuple[str, str]]]:
    """Apply the per-image rules.

    Returns the kept images (sorted by id), the drop counts and every (family, species) folder
    the reference creates (one per species of any image's first annotation, dropped or not).
    """
    crowd = crowd_list()
    dropped: Counter = Counter()
    kept: list[_Image] = []
    folders: set[tuple[str, str]] = set()
    for iid in sorted(images):
        im = images[iid]
        alist = anns.get(iid, [])
        if not alist:
            dropped["no_annotation"] += 1
            continue
        first = alist[0]  # first in merge order (train, test, val files)
        kps = list(first["keypoints"])
        if len(kps) != 3 * NUM_KEYPOINTS:
            raise ValueError(
                f"AP-10K: annotation {first.get('id')} has {len(kps)} keypoint values, "
                f"expected {3 * NUM_KEYPOINTS}"
            )
        cid = int(first["category_id"])
        if cid not in cats:
            raise ValueError(f"AP-10K: annotation {first.get('id')}: unknown category {cid}")
        if "num_keypoints" not in first:
            raise ValueError(
                f"AP-10K: annotation {first.get('id')} has no num_keypoints (the reference "
                "filters on the stored count)"
            )
        inside(Path("data"), str(im["file_name"]), f"AP-10K raw release: image {iid}: file_name")
        image = _Image(
            id=iid,
            file_name=str(im["file_name"]),
            width=int(im["width"]),
            height=int(im["height"]),
            ann_id=first.get("id"),
            bbox=list(first["bbox"]),
            keypoints=[list(kps[i : i + 3]) for i in range(0, len(kps), 3)],
            num_keypoints=first["num_keypoints"],
            category_id=cid,
            species=str(cats[cid]["name"]),
            family=str(cats[cid]["supercategory"]),
        )
        folders.add(image.folder)
        if image.stem in crowd:
            dropped["crowd"] += 1
        elif not image.num_keypoints >= MIN_KEYPOINTS:
            dropped["few_keypoints"] += 1
        else:
            kept.append(image)
    return kept, dropped, folders


def _assign_splits(
    kept: list[_Image], folders: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, list[_Image]]]:
    """Per (family, species) folder, its images listed by file name: first trn, then val, test.

    The last min(30, n) images are test, the min(20, n - 30) before them val, the rest trn.
    """
    by_folder: dict[tuple[str, str], list[_Image]] = {f: [] for f in folders}
    for im in kept:
        by_folder[im.folder].append(im)
    out: dict[tuple[str, str], dict[str, list[_Image]]] = {}
    for key, ims in by_folder.items():
        ims = sorted(ims, key=lambda im: im.listing_name)
        n = len(ims)
        n_test = min(N_TEST, n)
        n_val = min(N_VAL, max(0, n - n_test))
        n_trn = n - n_test - n_val
        out[key] = {
            "trn": ims[:n_trn],
            "val": ims[n_trn : n_trn + n_val],
            "test": ims[n_trn + n_val :],
        }
    return out


def _mutual_ok(a: list[_Image], b: list[_Image]) -> np.ndarray:
    """(len(a), len(b)): the reference's rule, sum over keypoints of (v_a / 2) * (v_b / 2) >= 3.

    With COCO's v in {0, 1, 2} every term is a multiple of 1/4, so the sums are exact.
    """

    def halves(ims: list[_Image]) -> np.ndarray:
        v = [[float(kp[2]) for kp in im.keypoints] for im in ims]
        return np.asarray(v, dtype=np.float64).reshape(len(ims), NUM_KEYPOINTS) / 2

    return (halves(a) @ halves(b).T) >= MIN_KEYPOINTS


def _product_candidates(a: list[_Image], b: list[_Image]) -> list[tuple[_Image, _Image]]:
    """``itertools.product(a, b)`` order, kept where the mutual-visibility rule holds."""
    ii, jj = np.nonzero(_mutual_ok(a, b))
    return [(a[i], b[j]) for i, j in zip(ii.tolist(), jj.tolist(), strict=True)]


def _replay_intra(
    rnd: random.Random, images: list[_Image], cap: int
) -> list[tuple[_Image, _Image]]:
    """One species folder of the intra-species cell: shuffle, ordered combinations, sample."""
    ims = list(images)
    rnd.shuffle(ims)
    ii, jj = np.nonzero(np.triu(_mutual_ok(ims, ims), k=1))  # combinations(ims, 2) order
    possible = list(zip(ii.tolist(), jj.tolist(), strict=True))
    k = min(cap, len(possible))
    chosen = rnd.sample(possible, k) if k > 0 else []
    return [(ims[i], ims[j]) for i, j in chosen]


def _make_pairs(
    lists: dict[tuple[str, str], dict[str, list[_Image]]],
) -> tuple[dict[str, list[tuple[_Image, _Image, str]]], int]:
    """Replay the reference's three pair cells on the sorted folder listings.

    Returns ({split dir: [(src, trg, name), ...] sorted by file stem} for test and val, the
    number of trn pairs the reference would write). Each cell has its own ``Random(42)``, called
    exactly as the notebook calls the global ``random`` after its ``random.seed(42)``.
    """
    from tqdm import tqdm

    folders = sorted(lists)
    families = sorted({fam for fam, _ in folders})
    species_of = {fam: [sp for f, sp in folders if f == fam] for fam in families}
    out: dict[str, list[tuple[_Image, _Image, str]]] = {}

    # intra-species: trn (cap 50 per image), then test and val (no cap: every candidate)
    rnd = random.Random(SEED)
    n_trn = 0
    for split in ("trn", "test", "val"):
        pairs = []
        for fam, sp in folders:
            ims = lists[(fam, sp)][split]
            n = len(ims)
            cap = TRN_PAIRS_PER_IMAGE * n if split == "trn" else n * (n - 1) // 2
            pairs += [(s, t, sp) for s, t in _replay_intra(rnd, ims, cap)]
        if split == "trn":
            n_trn = len(pairs)
        else:
            out[split] = pairs

    # cross-species: val, then test; one draw per product element, whose outcome is unused
    rnd = random.Random(SEED)
    for split in ("val", "test"):
        pairs = []
        for fam in families:
            species = species_of[fam]
            if len(species) < 2:
                continue
            cand: list[tuple[_Image, _Image]] = []
            for x in range(len(species)):
                for y in range(x + 1, len(species)):
                    a = lists[(fam, species[x])][split]
                    b = lists[(fam, species[y])][split]
                    for _ in range(len(a) * len(b)):
                        rnd.random()
                    cand += _product_candidates(a, b)
            k = min(CAPS[split]["cross-species"], len(cand))
            pairs += [(s, t, fam) for s, t in rnd.sample(cand, k)]
        out[split + "_cross_species"] = pairs

    # cross-family: test, then val; a family's list is its species' lists in folder order
    rnd = random.Random(SEED)
    for split in ("test", "val"):
        fam_images = {
            fam: [im for sp in species_of[fam] for im in lists[(fam, sp)][split]]
            for fam in families
        }
        fam_pairs = [
            (families[x], families[y])
            for x in range(len(families))
            for y in range(x + 1, len(families))
        ]
        pairs = []
        for f1, f2 in tqdm(fam_pairs, desc=f"{split} cross-family", leave=False, disable=None):
            cand = _product_candidates(fam_images[f1], fam_images[f2])
            k = min(CAPS[split]["cross-family"], len(cand))
            pairs += [(s, t, "all") for s, t in rnd.sample(cand, k)]
        out[split + "_cross_family"] = pairs

    for key in out:
        out[key] = sorted(out[key], key=lambda p: _pair_stem(*p))
    return out, n_trn


def _pair_stem(src: _Image, trg: _Image, name: str) -> str:
    return f"{src.stem}-{trg.stem}:{_safe(name)}"


def _image_suffix(im: _Image) -> str:
    suffix = Path(im.file_name).suffix.lower()
    return ".jpg" if suffix in ("", ".jpg", ".jpeg") else suffix


def _image_rel(im: _Image) -> str:
    return f"JPEGImages/{_safe(im.family)}/{_safe(im.species)}/{im.stem}{_image_suffix(im)}"


def _json_rel(im: _Image) -> str:
    return f"ImageAnnotation/{_safe(im.family)}/{_safe(im.species)}/{im.stem}.json"


def _image_json(im: _Image, split: str) -> dict:
    return {
        "image_id": im.id,
        "annotation_id": im.ann_id,
        "file_name": im.file_name,
        "image": _image_rel(im),
        "width": im.width,
        "height": im.height,
        "bbox": im.bbox,
        "keypoints": im.keypoints,
        "num_keypoints": im.num_keypoints,
        "category_id": im.category_id,
        "species": im.species,
        "family": im.family,
        "split": split,
    }


def _pair_json(src: _Image, trg: _Image, name: str, subset: str, split: str) -> dict:
    stem = _pair_stem(src, trg, name)
    mutual = np.nonzero(src.vis & trg.vis)[0].tolist()

    def bndbox(b: list) -> list:
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    return {
        "pair_id": stem,
        "filename": stem,
        "category": name,
        "subset": subset,
        "split": split,
        "src_imname": f"{src.stem}{_image_suffix(src)}",
        "trg_imname": f"{trg.stem}{_image_suffix(trg)}",
        "src_image": _image_rel(src),
        "trg_image": _image_rel(trg),
        "src_json_path": _json_rel(src),
        "trg_json_path": _json_rel(trg),
        "src_imsize": [src.width, src.height],
        "trg_imsize": [trg.width, trg.height],
        "src_bbox": src.bbox,
        "trg_bbox": trg.bbox,
        "src_bndbox": bndbox(src.bbox),
        "trg_bndbox": bndbox(trg.bbox),
        "src_kps": src.keypoints,
        "trg_kps": trg.keypoints,
        "kps_ids": [str(i) for i in mutual],
        "src_species": src.species,
        "trg_species": trg.species,
        "src_family": src.family,
        "trg_family": trg.family,
    }


def _put_image(src: Path, dst: Path, link: bool) -> None:
    """Copy (or symlink) ``src`` to ``dst`` atomically (temp file in the same folder + rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        if link:
            os.unlink(tmp)
            os.symlink(src.resolve(), tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


_OWN = {
    "ImageAnnotation": re.compile(r"^\d{12}\.json$"),
    "JPEGImages": re.compile(r"^\d{12}\.\w+$"),
    "PairAnnotation": re.compile(r"^\d{12}-\d{12}:.+\.json$"),
}


def _prune(out: Path, keep: set[Path]) -> int:
    """Delete files of the builder's own name patterns under its subfolders not in ``keep``."""
    removed = 0
    for sub, pattern in _OWN.items():
        base = out / sub
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if (path.is_file() or path.is_symlink()) and pattern.match(path.name):
                if path not in keep:
                    path.unlink()
                    removed += 1
    return removed


def build_ap10k(src: str | Path, out: str | Path, link_images: bool = False) -> dict:
    """Build the AP-10K correspondence benchmark from the raw release; returns the manifest."""
    from tqdm import tqdm

    from corr.io import atomic_write_json, atomic_write_text

    src, out = Path(src), Path(out)
    cats, images, anns = _read_raw(src)
    kept, dropped, folders = _select_images(cats, images, anns)
    missing = [im for im in kept if not (src / "data" / im.file_name).is_file()]
    if missing:
        first = src / "data" / missing[0].file_name
        raise DatasetLayoutError(
            "AP-10K raw release",
            _RAW_LAYOUT,
            first,
            hint=f"({len(missing)} of {len(kept)} kept images are missing)",
        )
    lists = _assign_splits(kept, folders)
    split_of = {im.id: split for per in lists.values() for split, ims in per.items() for im in ims}
    pairs, n_trn_pairs = _make_pairs(lists)

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()
    keep: set[Path] = set()

    for im in tqdm(kept, desc="AP-10K images", unit="img", disable=None):
        ann_path, img_path = out / _json_rel(im), out / _image_rel(im)
        atomic_write_json(ann_path, _image_json(im, split_of[im.id]), durable=False)
        _put_image(src / "data" / im.file_name, img_path, link_images)
        keep.update((ann_path, img_path))

    subset_of = {suffix: subset for subset, suffix in AP10K_SUBSETS.items()}
    pair_counts: dict[str, int] = {}
    pair_lines: list[str] = []
    files_hash = hashlib.sha256()
    for split in _SPLITS:
        for split_dir in sorted(d for d in pairs if d.split("_")[0] == split):
            subset = subset_of[split_dir[len(split) :]]
            for s, t, name in tqdm(pairs[split_dir], desc=split_dir, leave=False, disable=None):
                stem = _pair_stem(s, t, name)
                path = out / "PairAnnotation" / split_dir / f"{stem}.json"
                body = json.dumps(_pair_json(s, t, name, subset, split), indent=2) + "\n"
                atomic_write_text(path, body, durable=False)  # atomic_write_json's format
                keep.add(path)
                line = f"{split_dir}/{stem}"
                pair_lines.append(line)
                digest = hashlib.sha256(body.encode()).hexdigest()
                files_hash.update(f"{line}\n{digest}\n".encode())
            pair_counts[split_dir] = len(pairs[split_dir])
            (out / "PairAnnotation" / split_dir).mkdir(parents=True, exist_ok=True)
    pruned = _prune(out, keep)

    image_counts: dict[str, int] = Counter(split_of.values())
    per_species: dict[str, dict[str, int]] = defaultdict(lambda: {"trn": 0, "val": 0, "test": 0})
    family_of: dict[str, str] = {}
    for im in kept:
        per_species[im.species][split_of[im.id]] += 1
        family_of[im.species] = im.family
    crowd_source = {**REFERENCE, "path": "data/ap-10k_is_crowd.txt"}
    pair_list = "\n".join(sorted(pair_lines)) + "\n"
    manifest = {
        "dataset": "ap10k",
        "builder_version": BUILDER_VERSION,
        "rules": {
            "protocol": (
                "GeoAware-SC prepare_ap10k.ipynb replayed call for call (random.seed(42) per "
                "pair cell; its shuffle, sample and random calls in its order), with every "
                "folder listing sorted by name where the notebook used os.listdir order"
            ),
            "reference": REFERENCE,
            "source": "ap10k-{train,test,val}-split1.json merged in that order",
            "first_annotation": "first listed for the image in the merged files",
            "crowd": "images listed in corr/tables/ap10k_is_crowd.txt are dropped",
            "crowd_list_source": crowd_source,
            "few_keypoints": "stored num_keypoints of the first annotation < 3 -> dropped",
            "sort": "ImageAnnotation file name ({id:012d}.json) per family/species folder",
            "test_per_species": N_TEST,
            "val_per_species": N_VAL,
            "min_mutual_keypoints": "sum over keypoints of (v_src / 2) * (v_trg / 2) >= 3",
            "intra_species": (
                "per species: shuffle, combinations in shuffled order (src first), all kept "
                "via random.sample; trn (cap 50 x images) replayed, not written"
            ),
            "cross_species": "per family: src species before trg species in folder order",
            "cross_family": "per family pair: src family before trg family in folder order",
            "caps": CAPS,
            "split_order": {
                "intra-species": ["trn", "test", "val"],
                "cross-species": ["val", "test"],
                "cross-family": ["test", "val"],
            },
            "differences_from_reference": [
                "folder listings sorted by name (the notebook: os.listdir order)",
                "trn pairs not written (their draws are replayed)",
                "categories merged from all three files, a conflict is an error (the notebook "
                "reads the first file's)",
                "a missing image file or num_keypoints is an error",
            ],
        },
        "images": {
            "total": len(kept),
            "trn": image_counts.get("trn", 0),
            "val": image_counts.get("val", 0),
            "test": image_counts.get("test", 0),
            "dropped": dict(sorted(dropped.items())),
            "families": len(set(family_of.values())),
            "species": len(per_species),
            "per_species": {
                sp: {"family": family_of[sp], **per_species[sp]} for sp in sorted(per_species)
            },
        },
        "pairs": dict(sorted(pair_counts.items())),
        "pairs_not_written": {"trn": n_trn_pairs},
        "pair_list_sha256": hashlib.sha256(pair_list.encode()).hexdigest(),
        "pair_files_sha256": files_hash.hexdigest(),
    }
    atomic_write_text(out / "pair_list.txt", pair_list)
    os.sync()  # every file above reaches the disk before the manifest says the build is complete
    atomic_write_json(manifest_path, manifest)
    if pruned:
        logger.warning("removed %d stale files from a previous build in %s", pruned, out)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m corr.datasets.ap10k build --src RAW --out DIR [--link-images]``."""
    from ..logs import setup_cli_logging

    setup_cli_logging()
    parser = argparse.ArgumentParser(
        prog="python -m corr.datasets.ap10k",
        description="Build the AP-10K semantic-correspondence benchmark (GeoAware-SC protocol).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the benchmark from the raw COCO-style release")
    b.add_argument("--src", required=True, type=Path, help="raw release (annotations/, data/)")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    mode = b.add_mutually_exclusive_group()
    mode.add_argument("--copy-images", dest="link", action="store_false", help="copy (default)")
    mode.add_argument("--link-images", dest="link", action="store_true", help="symlink images")
    b.set_defaults(link=False)
    args = parser.parse_args(argv)
    try:
        manifest = build_ap10k(args.src, args.out, link_images=args.link)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    im = manifest["images"]
    print(f"AP-10K benchmark written to {args.out}")
    print(
        f"images: {im['total']} kept (trn {im['trn']}, val {im['val']}, test {im['test']}); "
        f"dropped {im['dropped']}"
    )
    for k, v in manifest["pairs"].items():
        print(f"pairs {k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
