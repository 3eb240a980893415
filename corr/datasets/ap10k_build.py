"""AP-10K benchmark builder: writes the prepared folder from the raw release (protocol §8).

Run it as ``python -m corr.datasets.ap10k build --src RAW --out DIR [--link-images]``. The raw
release is read by :mod:`corr.datasets.ap10k_raw`, the images split and the pairs drawn by
:mod:`corr.datasets.ap10k_pairs`; the folder written is described in :mod:`corr.datasets.ap10k`.

* Pair files are written for ``test`` and ``val`` (no ``trn`` pairs: the toolkit is zero-shot).
* Images are copied (``--copy-images``, default) or symlinked (``--link-images``); the output file
  keeps the name ``{id:012d}`` and the source suffix (``.jpeg`` becomes ``.jpg``).
* All files are written atomically, JSON with 2-space indentation, so a build is byte-identical
  whatever the file system listing order or the order of images and categories in the input
  JSON (the order of an image's annotations matters: it decides the first). A rebuild into the same
  folder removes stale files of the builder's own patterns from its three subfolders;
  ``manifest.json`` is removed first and written last, after :func:`os.sync` (the thousands of
  small files are not each ``fsync``-ed), so its presence marks a complete build on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .ap10k_pairs import (
    AP10K_SPLITS,
    AP10K_SUBSETS,
    CAPS,
    N_TEST,
    N_VAL,
    assign_splits,
    make_pairs,
    pair_stem,
)
from .ap10k_raw import RAW_LAYOUT, REFERENCE, RawImage, read_raw, safe_name, select_images
from .records import DatasetLayoutError

logger = logging.getLogger(__name__)

__all__ = ["build_ap10k", "main", "BUILDER_VERSION"]

BUILDER_VERSION = 2


def _image_suffix(im: RawImage) -> str:
    suffix = Path(im.file_name).suffix.lower()
    return ".jpg" if suffix in ("", ".jpg", ".jpeg") else suffix


def _image_rel(im: RawImage) -> str:
    return f"JPEGImages/{safe_name(im.family)}/{safe_name(im.species)}/{im.stem}{_image_suffix(im)}"


def _json_rel(im: RawImage) -> str:
    return f"ImageAnnotation/{safe_name(im.family)}/{safe_name(im.species)}/{im.stem}.json"


def _image_json(im: RawImage, split: str) -> dict:
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


def _pair_json(src: RawImage, trg: RawImage, name: str, subset: str, split: str) -> dict:
    stem = pair_stem(src, trg, name)
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
    cats, images, anns = read_raw(src)
    kept, dropped, folders = select_images(cats, images, anns)
    missing = [im for im in kept if not (src / "data" / im.file_name).is_file()]
    if missing:
        first = src / "data" / missing[0].file_name
        raise DatasetLayoutError(
            "AP-10K raw release",
            RAW_LAYOUT,
            first,
            hint=f"({len(missing)} of {len(kept)} kept images are missing)",
        )
    lists = assign_splits(kept, folders)
    split_of = {im.id: split for per in lists.values() for split, ims in per.items() for im in ims}
    pairs, n_trn_pairs = make_pairs(lists)

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
    for split in AP10K_SPLITS:
        for split_dir in sorted(d for d in pairs if d.split("_")[0] == split):
            subset = subset_of[split_dir[len(split) :]]
            for s, t, name in tqdm(pairs[split_dir], desc=split_dir, leave=False, disable=None):
                stem = pair_stem(s, t, name)
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
