"""The AP-10K builder against GeoAware-SC's ``prepare_ap10k.ipynb`` (golden/ap10k_builder.json).

The golden holds what the notebook's own cells (0-5) produced on the synthetic raw release that
:func:`make_synthetic_raw` writes, with every folder listing sorted (the builder's one documented
difference from the notebook): the images of each split per species folder, and every pair file
(``src-trg:name``, image ids without padding) of the test and val subsets.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from corr.datasets.ap10k import build_ap10k, crowd_list

# family -> species -> usable images; big enough that every cap bites with the real values:
# dog has 120 trn images (cap 50 x 120 < candidates), Canidae 3 x 20 val / 3 x 30 test images
# (> 400 / 900 cross-species candidates), every family pair > 30 / 20 cross-family candidates
FAMILIES = {
    "Canidae": {"dog": 170, "fox": 62, "wolf": 55},
    "Felidae": {"cat": 40, "lion": 25, "snow leopard": 8},
    "Bovidae": {"cow": 33},
    "Equidae": {"horse": 6, "zebra": 3},
    "Ursidae": {"bear": 0},  # a folder whose images are all dropped
}
# image stems in GeoAware-SC's crowd list (data/ap-10k_is_crowd.txt): dropped whatever they hold
CROWD_IDS = [1, 37, 38, 46, 49, 1144, 1602, 22047, 22657, 58615]
SPLIT_FILES = ("ap10k-train-split1.json", "ap10k-val-split1.json", "ap10k-test-split1.json")


def _kps(rng: random.Random, n_visible: int, v: int = 2) -> list:
    vis = set(rng.sample(range(17), n_visible))
    out: list = []
    for k in range(17):
        out += [rng.randint(0, 63), rng.randint(0, 47), v] if k in vis else [0, 0, 0]
    return out


def make_synthetic_raw(root: Path) -> None:
    """Write a small COCO-style AP-10K release (annotations/ and data/) under ``root``.

    Besides plain images it holds: crowd-listed images, images whose stored ``num_keypoints``
    disagrees with their visible keypoints (either way), COCO ``iscrowd`` images that are not
    crowd-listed, keypoints with v = 1 (half weight in the mutual-visibility rule), images with
    a second annotation (of another species, listed after the first but with a smaller id), an
    image without annotation and an annotation without image. Annotations are listed in a
    shuffled order within each file.
    """
    rng = random.Random(20240320)
    cats, cid = [], 0
    for fam, species in FAMILIES.items():
        for sp in species:
            cid += 1
            cats.append({"id": cid, "name": sp, "supercategory": fam,
                         "keypoints": [f"k{k}" for k in range(17)]})  # fmt: skip
    crowd = list(CROWD_IDS)
    ids = rng.sample(range(60000, 100000), 600)  # above every crowd-listed id
    images, anns, ann_id = [], [], 5000
    for cat in cats:
        n = FAMILIES[cat["supercategory"]][cat["name"]]
        extra = ["crowd", "few", "fewvis", "cococrowd", "half", "second"]
        if n == 0:
            extra = ["crowd", "few"]
        for kind in ["ok"] * n + extra:
            iid = crowd.pop() if kind == "crowd" and crowd else ids.pop()
            images.append({"id": iid, "file_name": f"{iid:012d}.jpg", "width": 64, "height": 48})
            n_vis = rng.choice([3, 4, 9, 12, 14, 17, 17]) if cat["name"] != "dog" else 15
            stored = n_vis
            kps = _kps(rng, n_vis)
            if kind == "few":
                stored = 2  # the stored count drops it, though 17 keypoints are visible
                kps = _kps(rng, 17)
            elif kind == "fewvis":
                kps, stored = _kps(rng, 2), 5  # kept on its stored count, never in a pair
            elif kind == "half":
                kps = _kps(rng, 8, v=1)  # a v = 1 term weighs 1/2 (x 1/2 or x 1) in the rule
            ann_id += rng.randint(1, 3)
            a = {"id": ann_id, "image_id": iid, "category_id": cat["id"],
                 "iscrowd": int(kind == "cococrowd"), "bbox": [1.0, 2.0, 30.5, 20.25],
                 "keypoints": kps, "num_keypoints": stored}  # fmt: skip
            anns.append(a)
            if kind == "second":  # listed after the first, smaller id, another species
                other = cats[(cat["id"] % len(cats))]["id"]
                anns.append(a | {"id": ann_id - 4000, "category_id": other,
                                 "keypoints": _kps(rng, 2), "num_keypoints": 2})  # fmt: skip
    images.append({"id": 100500, "file_name": "000000100500.jpg", "width": 64, "height": 48})
    anns.append({"id": 1, "image_id": 123456, "category_id": 1, "iscrowd": 0,
                 "bbox": [0, 0, 1, 1], "keypoints": _kps(rng, 17), "num_keypoints": 17})  # fmt: skip
    (root / "data").mkdir(parents=True)
    for im in images:
        (root / "data" / im["file_name"]).write_bytes(b"")
    parts: list[dict] = [{"images": [], "annotations": [], "categories": cats} for _ in range(3)]
    where = {im["id"]: rng.randrange(3) for im in images}
    for im in images:
        parts[where[im["id"]]]["images"].append(im)
    for a in anns:
        parts[where.get(a["image_id"], 0)]["annotations"].append(a)
    for part in parts:  # shuffle, keeping each image's annotations in their order
        order = rng.sample(part["annotations"], len(part["annotations"]))
        queues: dict[int, list] = {}
        for a in part["annotations"]:
            queues.setdefault(a["image_id"], []).append(a)
        part["annotations"] = [queues[a["image_id"]].pop(0) for a in order]
    (root / "annotations").mkdir()
    for name, part in zip(SPLIT_FILES, parts, strict=True):
        (root / "annotations" / name).write_text(json.dumps(part))


def _short(stem: str) -> str:
    ids, name = stem.split(":", 1)
    src, trg = ids.split("-")
    return f"{int(src)}-{int(trg)}:{name}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("ap10k_parity")
    make_synthetic_raw(base / "raw")
    manifest = build_ap10k(base / "raw", base / "out", link_images=True)
    return base / "out", manifest


def test_crowd_ids_are_in_the_shipped_list():
    assert {f"{i:012d}" for i in CROWD_IDS} <= crowd_list()
    assert len(crowd_list()) == 1847


def test_selected_images_match_the_notebook(built, golden):
    out, _ = built
    data = golden("ap10k_builder.json")
    got: dict[str, dict[str, list[int]]] = {}
    for f in sorted((out / "ImageAnnotation").rglob("*.json")):
        ann = json.loads(f.read_text())
        folder = f"{ann['family']}/{ann['species']}"
        got.setdefault(folder, {"trn": [], "val": [], "test": []})[ann["split"]].append(
            ann["image_id"]
        )
    expected = {k: v for k, v in data["images"].items() if any(v.values())}
    assert got == expected


@pytest.mark.parametrize(
    "split_dir",
    ["test", "val", "test_cross_species", "val_cross_species", "test_cross_family",
     "val_cross_family"],
)  # fmt: skip
def test_pairs_match_the_notebook(built, golden, split_dir):
    out, manifest = built
    expected = golden("ap10k_builder.json")["pairs"][split_dir]
    got = sorted(_short(p.stem) for p in (out / "PairAnnotation" / split_dir).glob("*.json"))
    assert got == sorted(expected)  # ordered src -> trg
    assert manifest["pairs"][split_dir] == len(expected)


def test_caps_bite_and_trn_replay(built, golden):
    """The synthetic set exercises every cap with its real value, and the trn replay."""
    _, manifest = built
    data = golden("ap10k_builder.json")
    pairs = data["pairs"]
    assert manifest["pairs_not_written"]["trn"] == data["trn_pairs"]
    dog = data["images"]["Canidae/dog"]["trn"]
    assert data["trn_pairs"] > 50 * len(dog) and len(dog) * (len(dog) - 1) // 2 > 50 * len(dog)

    def count(split_dir: str, name: str) -> int:
        return sum(s.endswith(":" + name) for s in pairs[split_dir])

    assert count("test_cross_species", "Canidae") == count("test_cross_species", "Felidae") == 900
    assert count("val_cross_species", "Canidae") == 400 == len(pairs["val_cross_species"])
    assert len(pairs["test_cross_family"]) == 6 * 30  # 4 non-empty families
    assert len(pairs["val_cross_family"]) == 3 * 20  # 3 families with val images

    # intra-species orientation follows the shuffle, not the ids
    def ids(s: str) -> tuple[int, int]:
        a, b = s.split(":")[0].split("-")
        return int(a), int(b)

    flipped = sum(a > b for a, b in map(ids, pairs["test"]))
    assert 0.3 < flipped / len(pairs["test"]) < 0.7
