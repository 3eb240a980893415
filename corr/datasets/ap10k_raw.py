"""AP-10K raw release: reading the COCO-style files and the per-image rules (protocol §8).

Raw input (the COCO-style AP-10K release)::

    RAW/annotations/ap10k-{train,val,test}-split1.json
    RAW/data/{file_name}

Rules of GeoAware-SC's ``prepare_ap10k.ipynb`` (commit in :data:`REFERENCE`):

* The three split-1 files are merged in the notebook's order (train, test, val; images and
  categories by id, a conflicting duplicate is an error). Species = COCO category ``name``,
  family = its ``supercategory``; each species is a folder ``family/species``.
* An image's "first annotation" is the first one listed for it in the merged files (the notebook
  keeps the first annotation per ``image_id``); it gives the species, box and keypoints.
* An image is dropped if it has no annotation, if its stem (``{id:012d}``) is in the reference's
  crowd list (``corr/tables/ap10k_is_crowd.txt``, its source in the file's first line; the COCO
  ``iscrowd`` flag is not used), else if the first annotation's stored ``num_keypoints`` is below
  3. Drop counts go to the manifest.

The split and pair rules are in :mod:`corr.datasets.ap10k_pairs`, the writing in
:mod:`corr.datasets.ap10k_build`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .paths import data_path
from .records import DatasetLayoutError, read_json

__all__ = [
    "RawImage",
    "read_raw",
    "select_images",
    "crowd_list",
    "safe_name",
    "NUM_KEYPOINTS",
    "MIN_KEYPOINTS",
    "REFERENCE",
    "RAW_LAYOUT",
    "RAW_FILES",
]

NUM_KEYPOINTS = 17  #: COCO animal keypoints per image
MIN_KEYPOINTS = 3  #: fewer stored keypoints drop an image; fewer mutual ones refuse a pair
CROWD_TABLE = "tables/ap10k_is_crowd.txt"
REFERENCE = {
    "repository": "Junyi42/GeoAware-SC",
    "commit": "99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72",
    "path": "prepare_ap10k.ipynb",
}
RAW_LAYOUT = (
    "  RAW/annotations/ap10k-{train,val,test}-split1.json\n  RAW/data/{file_name}  (the images)"
)
# the reference's merge order (it decides which annotation is an image's first)
RAW_FILES = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")


@dataclass(frozen=True)
class RawImage:
    """One kept or dropped image of the raw release, with the fields of its first annotation."""

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
        """``{id:012d}``: the name of its files in the built benchmark."""
        return f"{self.id:012d}"

    @property
    def listing_name(self) -> str:
        """The ImageAnnotation file name the reference lists (``str(id).zfill(17)`` of id.json)."""
        return f"{self.id}.json".zfill(17)

    @property
    def folder(self) -> tuple[str, str]:
        """(family, species): its species folder."""
        return (self.family, self.species)

    @property
    def vis(self) -> np.ndarray:
        """(17,) bool: keypoint k visible (v > 0)."""
        return np.array([kp[2] > 0 for kp in self.keypoints], bool)


def safe_name(name: str) -> str:
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


def read_raw(src: Path) -> tuple[dict, dict, dict]:
    """Merged (categories by id, images by id, annotations by image id) of the split-1 files.

    Annotations keep the reference's merge order: the train, test, val files, each in its own
    listing order. An image's ``file_name`` that leaves ``RAW/data`` raises
    :class:`~.paths.DataPathError` naming the annotation file, the image id and the field.
    """
    ann_dir = src / "annotations"
    for p in (src, ann_dir, *(ann_dir / f for f in RAW_FILES)):
        if not p.exists():
            raise DatasetLayoutError("AP-10K raw release", RAW_LAYOUT, p)
    cats: dict[int, dict] = {}
    images: dict[int, dict] = {}
    anns: dict[int, list[dict]] = defaultdict(list)
    for fname in RAW_FILES:
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
            # the builder reads RAW/data/{file_name}: checked here, before any image is opened
            item = f"image {iid}"
            data_path(
                src,
                im["file_name"],
                file=ann_dir / fname,
                field="file_name",
                item=item,
                under="data",
            )
            if images.setdefault(iid, im) != im:
                raise ValueError(f"AP-10K: image {iid} differs between files ({fname})")
        for a in data.get("annotations", []):
            anns[int(a["image_id"])].append(a)
    return cats, images, anns


def select_images(
    cats: dict, images: dict, anns: dict
) -> tuple[list[RawImage], Counter, set[tuple[str, str]]]:
    """Apply the per-image rules.

    Returns the kept images (sorted by id), the drop counts and every (family, species) folder
    the reference creates (one per species of any image's first annotation, dropped or not).
    """
    crowd = crowd_list()
    dropped: Counter = Counter()
    kept: list[RawImage] = []
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
        image = RawImage(
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
