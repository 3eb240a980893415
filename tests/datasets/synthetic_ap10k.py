"""A tiny synthetic raw AP-10K release (COCO layout) for the data-set tests; not a test module."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def make_ap10k_raw(dest: Path) -> None:
    """A small COCO-style AP-10K release: 3 species in 2 families, all 17 keypoints visible."""
    species = [("cat", "Felidae", 4), ("lion", "Felidae", 3), ("dog", "Canidae", 3)]
    cats = [
        {"id": i + 1, "name": n, "supercategory": f, "keypoints": [f"k{k}" for k in range(17)]}
        for i, (n, f, _) in enumerate(species)
    ]
    images, anns = [], []
    iid = 70000
    for cat, (_, _, n) in zip(cats, species, strict=True):
        for j in range(n):
            iid += 1
            images.append({"id": iid, "file_name": f"{iid:012d}.jpg", "width": 16, "height": 12})
            kps = [v for k in range(17) for v in ((k + j) % 16, (k * 3) % 12, 2)]
            anns.append({"id": iid + 5, "image_id": iid, "category_id": cat["id"], "iscrowd": 0,
                         "bbox": [1.0, 1.0, 12.0, 9.0], "keypoints": kps, "num_keypoints": 17})  # fmt: skip
    (dest / "data").mkdir(parents=True)
    for im in images:
        Image.new("RGB", (16, 12), (im["id"] % 256, 40, 90)).save(dest / "data" / im["file_name"])
    (dest / "annotations").mkdir()
    for k, name in enumerate(("train", "val", "test")):
        part = {"images": images[k::3], "annotations": anns[k::3], "categories": cats}
        (dest / "annotations" / f"ap10k-{name}-split1.json").write_text(json.dumps(part))
