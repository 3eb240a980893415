"""AP-10K correspondence benchmark: loader and builder (REFERENCE §8).

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

Builder rules (REFERENCE §8) and the choices made where it leaves room:

* The three split-1 files are merged (images and categories by id; a conflicting duplicate is an
  error). Species = COCO category ``name``, family = its ``supercategory``.
* "First annotation per image" = the annotation with the smallest annotation id (the release lists
  annotations in id order; defining it by id makes the output independent of listing order).
* An image is dropped if any of its annotations has ``iscrowd`` set, if it has no annotation, or if
  its first annotation has fewer than 3 keypoints with ``v > 0``. Drop counts go to the manifest.
* Each species' images are sorted by COCO image id (AP-10K file names are the zero-padded id, so
  this is also file-name order); the last 30 are ``test``, the previous 20 ``val``, the rest
  ``trn``. A species with fewer images fills ``test`` first, then ``val``.
* Pairs need at least 3 keypoints visible (``v > 0``) in both images. The source is always the
  image with the smaller id, so every pair is unordered (no (a, b) and (b, a) twice):
  - intra-species: all unordered pairs of a species' images of the split;
  - cross-species: within each family with more than one species in the split, all pairs of
    images of different species, of which at most 900 per family are kept;
  - cross-family: for each unordered pair of families, all pairs of one image from each, of
    which at most 30 are kept.
* Sampling: one ``random.Random(42)`` per (split, subset), used for the groups in sorted order; a
  partial Fisher-Yates shuffle over the candidates (in (src id, trg id) order) using only
  ``Random.random()``, whose sequence Python guarantees across versions (``numpy.random`` and
  ``random.sample`` make no such promise). The kept pairs are written in sorted order.
* Pair files are written for ``test`` and ``val`` (no ``trn`` pairs: the toolkit is zero-shot).
* Images are copied (``--copy-images``, default) or symlinked (``--link-images``); the output file
  keeps the name ``{id:012d}`` and the source suffix (``.jpeg`` becomes ``.jpg``).
* All files are written atomically, JSON with 2-space indentation, so a build is byte-identical
  whatever the order of the input JSON or of the file system listing. A rebuild into the same
  folder removes stale files of the builder's own patterns from its three subfolders;
  ``manifest.json`` is removed first and written last, so its presence marks a complete build.

ImageAnnotation schema: ``image_id, annotation_id, file_name`` (raw), ``image`` (path of the copied
image relative to DIR), ``width, height, bbox`` ([x, y, w, h] as in COCO), ``keypoints`` (17
[x, y, v] triples), ``num_keypoints`` (count of v > 0), ``category_id, species, family, split``.

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
import os
import random
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .records import DatasetLayoutError, PairRecord, frozen, make_kps, read_json

__all__ = ["load_ap10k", "build_ap10k", "AP10K_SUBSETS", "NUM_KEYPOINTS", "main"]

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
CAP_CROSS_SPECIES = 900
CAP_CROSS_FAMILY = 30
BUILDER_VERSION = 1

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
_RAW_FILES = ("ap10k-train-split1.json", "ap10k-val-split1.json", "ap10k-test-split1.json")


# ----------------------------------------------------------------------------------- loader


def _split_dir(subset: str, split: str) -> str:
    if subset not in AP10K_SUBSETS:
        raise ValueError(f"AP-10K: unknown subset {subset!r}; use one of {list(AP10K_SUBSETS)}")
    if split not in _SPLITS:
        raise ValueError(f"AP-10K: unknown split {split!r}; use test or val")
    return split + AP10K_SUBSETS[subset]


def _rel_under(root: Path, path: str, anchor: str) -> Path:
    """Resolve a stored path relative to ``root`` (also paths such as data/ap-10k/{anchor}/...)."""
    p = path.replace("\\", "/")
    i = p.find(anchor + "/")
    return root / p[i:] if i >= 0 else root / p


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
            path = _rel_under(root, jp, "ImageAnnotation")
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
        img_path = root / image
    elif data.get(f"{side}_json_path"):
        rel = _rel_under(Path(), data[f"{side}_json_path"], "ImageAnnotation")
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
    category_id: int
    species: str
    family: str

    @property
    def stem(self) -> str:
        return f"{self.id:012d}"

    @property
    def vis(self) -> np.ndarray:
        return np.array([kp[2] > 0 for kp in self.keypoints], bool)


def _safe(name: str) -> str:
    """A species/family name usable as one path component."""
    out = str(name).replace("/", "_").replace("\\", "_").replace(":", "_")
    return out if out not in ("", ".", "..") else f"_{out}_"


def _read_raw(src: Path) -> tuple[dict, dict, dict]:
    """Merged (categories by id, images by id, annotations by image id) of the split-1 files."""
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
            iid = int(im["id"])
            if images.setdefault(iid, im) != im:
                raise ValueError(f"AP-10K: image {iid} differs between files ({fname})")
        for a in data.get("annotations", []):
            anns[int(a["image_id"])].append(a)
    return cats, images, anns


def _select_images(cats: dict, images: dict, anns: dict) -> tuple[list[_Image], Counter]:
    """Apply the per-image rules; returns the kept images (sorted by id) and drop counts."""
    dropped: Counter = Counter()
    kept: list[_Image] = []
    for iid in sorted(images):
        im = images[iid]
        alist = anns.get(iid, [])
        if not alist:
            dropped["no_annotation"] += 1
            continue
        if any(a.get("iscrowd", 0) for a in alist):
            dropped["crowd"] += 1
            continue
        # identical ids (a broken merge) are ordered by content, so the choice stays deterministic
        first = min(alist, key=lambda a: (a["id"], json.dumps(a, sort_keys=True)))
        kps = list(first["keypoints"])
        if len(kps) != 3 * NUM_KEYPOINTS:
            raise ValueError(
                f"AP-10K: annotation {first['id']} has {len(kps)} keypoint values, "
                f"expected {3 * NUM_KEYPOINTS}"
            )
        triples = [list(kps[i : i + 3]) for i in range(0, len(kps), 3)]
        if sum(1 for t in triples if t[2] > 0) < MIN_KEYPOINTS:
            dropped["few_keypoints"] += 1
            continue
        cid = int(first["category_id"])
        if cid not in cats:
            raise ValueError(f"AP-10K: annotation {first['id']}: unknown category {cid}")
        kept.append(
            _Image(
                id=iid,
                file_name=str(im["file_name"]),
                width=int(im["width"]),
                height=int(im["height"]),
                ann_id=first["id"],
                bbox=list(first["bbox"]),
                keypoints=triples,
                category_id=cid,
                species=str(cats[cid]["name"]),
                family=str(cats[cid]["supercategory"]),
            )
        )
    return kept, dropped


def _assign_splits(kept: list[_Image]) -> dict[int, str]:
    """Image id -> "trn" | "val" | "test": per species, by id, last 30 test, previous 20 val."""
    by_species: dict[str, list[_Image]] = defaultdict(list)
    for im in kept:
        by_species[im.species].append(im)
    split: dict[int, str] = {}
    for ims in by_species.values():
        ids = sorted(im.id for im in ims)
        n = len(ids)
        for i, iid in enumerate(ids):
            split[iid] = (
                "test" if i >= n - N_TEST else ("val" if i >= n - N_TEST - N_VAL else "trn")
            )
    return split


def _sample(n: int, k: int, rnd: random.Random) -> list[int]:
    """``min(n, k)`` distinct indices of range(n), sorted; partial Fisher-Yates on random()."""
    if k >= n:
        return list(range(n))
    swapped: dict[int, int] = {}
    out = []
    for i in range(k):
        j = i + int(rnd.random() * (n - i))
        out.append(swapped.get(j, j))
        swapped[j] = swapped.get(i, i)
    return sorted(out)


def _candidates(a: list[_Image], b: list[_Image] | None) -> list[tuple[_Image, _Image]]:
    """Pairs with >= 3 mutually visible keypoints, oriented src.id < trg.id, sorted by ids.

    ``b is None``: unordered pairs within ``a``; otherwise one image from each list.
    """
    if not a or (b is not None and not b):
        return []
    va = np.stack([im.vis for im in a]).astype(np.int32)
    vb = va if b is None else np.stack([im.vis for im in b]).astype(np.int32)
    ok = (va @ vb.T) >= MIN_KEYPOINTS
    if b is None:
        ok = np.triu(ok, k=1)
    ii, jj = np.nonzero(ok)
    other = a if b is None else b
    pairs = []
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        s, t = a[i], other[j]
        pairs.append((s, t) if s.id < t.id else (t, s))
    pairs.sort(key=lambda p: (p[0].id, p[1].id))
    return pairs


def _make_pairs(ims: list[_Image], split: str) -> dict[str, list[tuple[_Image, _Image, str]]]:
    """Pairs of one split: {split dir: [(src, trg, name), ...]} sorted by file stem."""
    from tqdm import tqdm

    by_species: dict[str, list[_Image]] = defaultdict(list)
    for im in sorted(ims, key=lambda im: im.id):
        by_species[im.species].append(im)
    family_species: dict[str, list[str]] = defaultdict(list)
    for sp in sorted(by_species):
        family_species[by_species[sp][0].family].append(sp)
    out: dict[str, list[tuple[_Image, _Image, str]]] = {}

    intra = []
    for sp in sorted(by_species):
        intra += [(s, t, sp) for s, t in _candidates(by_species[sp], None)]
    out[split] = intra

    rnd = random.Random(SEED)
    cross_sp = []
    for fam in sorted(family_species):
        species = family_species[fam]
        if len(species) < 2:
            continue
        cand = []
        for x in range(len(species)):
            for y in range(x + 1, len(species)):
                cand += _candidates(by_species[species[x]], by_species[species[y]])
        cand.sort(key=lambda p: (p[0].id, p[1].id))
        cross_sp += [(*cand[i], fam) for i in _sample(len(cand), CAP_CROSS_SPECIES, rnd)]
    out[split + "_cross_species"] = cross_sp

    rnd = random.Random(SEED)
    fam_images = {
        fam: sorted((im for sp in sps for im in by_species[sp]), key=lambda im: im.id)
        for fam, sps in family_species.items()
    }
    fams = sorted(fam_images)
    fam_pairs = [(fams[x], fams[y]) for x in range(len(fams)) for y in range(x + 1, len(fams))]
    cross_fam = []
    for f1, f2 in tqdm(fam_pairs, desc=f"{split} cross-family", leave=False, disable=None):
        cand = _candidates(fam_images[f1], fam_images[f2])
        cross_fam += [(*cand[i], "all") for i in _sample(len(cand), CAP_CROSS_FAMILY, rnd)]
    out[split + "_cross_family"] = cross_fam

    for key in out:
        out[key] = sorted(out[key], key=lambda p: _pair_stem(*p))
    return out


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
        "num_keypoints": int(im.vis.sum()),
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
    kept, dropped = _select_images(cats, images, anns)
    missing = [im for im in kept if not (src / "data" / im.file_name).is_file()]
    if missing:
        first = src / "data" / missing[0].file_name
        raise DatasetLayoutError(
            "AP-10K raw release",
            _RAW_LAYOUT,
            first,
            hint=f"({len(missing)} of {len(kept)} kept images are missing)",
        )
    split_of = _assign_splits(kept)

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()
    keep: set[Path] = set()

    for im in tqdm(kept, desc="AP-10K images", unit="img", disable=None):
        ann_path, img_path = out / _json_rel(im), out / _image_rel(im)
        atomic_write_json(ann_path, _image_json(im, split_of[im.id]))
        _put_image(src / "data" / im.file_name, img_path, link_images)
        keep.update((ann_path, img_path))

    subset_of = {suffix: subset for subset, suffix in AP10K_SUBSETS.items()}
    pair_counts: dict[str, int] = {}
    pair_lines: list[str] = []
    files_hash = hashlib.sha256()
    for split in _SPLITS:
        pairs = _make_pairs([im for im in kept if split_of[im.id] == split], split)
        for split_dir in sorted(pairs):
            subset = subset_of[split_dir[len(split) :]]
            for s, t, name in tqdm(pairs[split_dir], desc=split_dir, leave=False, disable=None):
                stem = _pair_stem(s, t, name)
                path = out / "PairAnnotation" / split_dir / f"{stem}.json"
                body = json.dumps(_pair_json(s, t, name, subset, split), indent=2) + "\n"
                atomic_write_text(path, body)  # the format of atomic_write_json
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
    pair_list = "\n".join(sorted(pair_lines)) + "\n"
    manifest = {
        "dataset": "ap10k",
        "builder_version": BUILDER_VERSION,
        "rules": {
            "source": "ap10k-{train,val,test}-split1.json merged",
            "first_annotation": "smallest annotation id",
            "drop": "crowd images, images without annotation, < 3 keypoints with v > 0",
            "sort": "image id per species",
            "test_per_species": N_TEST,
            "val_per_species": N_VAL,
            "min_mutual_keypoints": MIN_KEYPOINTS,
            "pairs": "unordered, src = smaller image id",
            "cap_cross_species_per_family": CAP_CROSS_SPECIES,
            "cap_cross_family_per_family_pair": CAP_CROSS_FAMILY,
            "sampling": "random.Random(42) per split and subset, partial Fisher-Yates on random()",
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
        "pair_list_sha256": hashlib.sha256(pair_list.encode()).hexdigest(),
        "pair_files_sha256": files_hash.hexdigest(),
    }
    atomic_write_text(out / "pair_list.txt", pair_list)
    atomic_write_json(manifest_path, manifest)
    if pruned:
        print(f"removed {pruned} stale files from a previous build", file=sys.stderr)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m corr.datasets.ap10k build --src RAW --out DIR [--link-images]``."""
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
