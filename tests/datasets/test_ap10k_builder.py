"""AP-10K benchmark builder on a small synthetic raw release, then the loader on its output."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corr.datasets import check_images, load_ap10k, load_pairs
from corr.datasets.ap10k import build_ap10k, crowd_list, main

# species -> (family, number of usable images)
SPECIES = {
    "cat": ("Felidae", 55),  # 5 trn, 20 val, 30 test
    "lion": ("Felidae", 36),  # 6 val, 30 test
    "tiger": ("Felidae", 14),  # 14 test
    "dog": ("Canidae", 40),  # 10 val, 30 test
    "cow": ("Bovidae", 4),
}
SPLIT_FILES = ("ap10k-train-split1.json", "ap10k-val-split1.json", "ap10k-test-split1.json")
CROWD_IDS = [22657, 22047, 22624, 22021]  # in GeoAware-SC's data/ap-10k_is_crowd.txt


def _kps(rng: random.Random, n_visible: int) -> list:
    vis = set(rng.sample(range(17), n_visible))
    out: list = []
    for k in range(17):
        v = rng.choice([2, 2, 2, 2, 2, 1])  # v = 1 weighs 1/2 in the mutual-visibility rule
        out += [rng.randint(0, 15), rng.randint(0, 11), v] if k in vis else [0, 0, 0]
    return out


def make_raw(root: Path) -> dict:
    """Write a raw release; returns the expected kept image ids per species and dropped ids."""
    rng = random.Random(7)
    cats = [
        {"id": i + 1, "name": sp, "supercategory": fam, "keypoints": [f"k{k}" for k in range(17)]}
        for i, (sp, (fam, _)) in enumerate(SPECIES.items())
    ]
    images, anns = [], []
    kept: dict[str, list[int]] = defaultdict(list)
    dropped: dict[str, list[int]] = defaultdict(list)
    ids = rng.sample(range(60000, 100000), 200)  # random order, above every crowd-listed id
    crowd_ids = list(CROWD_IDS)
    ann_id = 1000
    for cat in cats:
        n = SPECIES[cat["name"]][1]
        kinds = ["ok"] * n
        if cat["name"] in ("cat", "lion"):
            # kept: a COCO iscrowd flag (not in the crowd list), a stored num_keypoints of 3 with
            # 2 keypoints visible; dropped: crowd-listed, stored num_keypoints 2 (all 17 visible)
            kinds = kinds[:-2] + ["cococrowd", "stored3", "crowd", "few"]
        for kind in kinds:
            iid = crowd_ids.pop() if kind == "crowd" else ids.pop()
            images.append({"id": iid, "file_name": f"{iid:012d}.jpg", "width": 16, "height": 12})
            # sparse images (3 keypoints) make some pairs fail the >= 3 mutual rule
            n_vis = {"few": 17, "stored3": 2}.get(kind, rng.choice([3, 5, 9, 12, 15, 17]))
            ann_id += rng.randint(1, 3)
            a = {"id": ann_id, "image_id": iid, "category_id": cat["id"],
                 "iscrowd": int(kind == "cococrowd"), "bbox": [1.0, 2.0, 10.5, 7.25],
                 "keypoints": _kps(rng, n_vis),
                 "num_keypoints": {"few": 2, "stored3": 3}.get(kind, n_vis)}  # fmt: skip
            anns.append(a)
            if kind == "ok" and rng.random() < 0.2:  # listed later, smaller id: not used
                anns.append(a | {"id": ann_id - 900, "keypoints": _kps(rng, 2), "bbox": [0, 0, 1, 1]})  # fmt: skip
            if kind in ("crowd", "few"):
                dropped[kind].append(iid)
            else:
                kept[cat["name"]].append(iid)
    # one image without annotation
    images.append({"id": 999999, "file_name": "000000999999.jpg", "width": 16, "height": 12})
    dropped["no_annotation"].append(999999)
    (root / "data").mkdir(parents=True)
    for im in images:
        Image.new("RGB", (16, 12), (im["id"] % 256, 0, 0)).save(root / "data" / im["file_name"])
    # distribute images (with their annotations) over the three split files
    parts: list[dict] = [{"images": [], "annotations": [], "categories": cats} for _ in range(3)]
    where = {im["id"]: rng.randrange(3) for im in images}
    for im in images:
        parts[where[im["id"]]]["images"].append(im)
    for a in anns:
        parts[where[a["image_id"]]]["annotations"].append(a)
    (root / "annotations").mkdir()
    for name, part in zip(SPLIT_FILES, parts, strict=True):
        (root / "annotations" / name).write_text(json.dumps(part))
    return {"kept": kept, "dropped": dropped, "anns": anns}


def shuffle_raw(root: Path, seed: int) -> None:
    """Shuffle every list of the raw files, keeping each image's annotations in their order."""
    rng = random.Random(seed)
    for name in SPLIT_FILES:
        path = root / "annotations" / name
        data = json.loads(path.read_text())
        for key in ("images", "categories"):
            rng.shuffle(data[key])
        queues: dict[int, list] = defaultdict(list)
        for a in data["annotations"]:
            queues[a["image_id"]].append(a)
        order = rng.sample(data["annotations"], len(data["annotations"]))
        data["annotations"] = [queues[a["image_id"]].pop(0) for a in order]
        path.write_text(json.dumps(dict(reversed(list(data.items())))))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("ap10k")
    raw = base / "raw"
    truth = make_raw(raw)
    out1 = base / "out1"
    state = random.getstate()
    manifest = build_ap10k(raw, out1)
    assert random.getstate() == state  # the builder's random state is private
    shuffle_raw(raw, seed=3)
    out2 = base / "out2"
    # leftovers of an earlier build in the output folder: the builder's own files are pruned
    (out2 / "PairAnnotation/test").mkdir(parents=True)
    (out2 / "PairAnnotation/test/000000000001-000000000002:cat.json").write_text("{}")
    (out2 / "PairAnnotation/test/notes.txt").write_text("user file")
    assert main(["build", "--src", str(raw), "--out", str(out2), "--link-images"]) == 0
    return {"raw": raw, "out1": out1, "out2": out2, "manifest": manifest, **truth}


def _vis(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"]).reshape(17, 3)[:, 2] > 0


def _ok(a: dict, b: dict) -> bool:
    """The reference's pair rule: sum over keypoints of (v_a / 2) * (v_b / 2) >= 3."""
    va = np.asarray(a["keypoints"], float).reshape(17, 3)[:, 2]
    vb = np.asarray(b["keypoints"], float).reshape(17, 3)[:, 2]
    return float((va / 2 * vb / 2).sum()) >= 3


def test_images_and_splits(built: dict) -> None:
    out, kept, manifest = built["out1"], built["kept"], built["manifest"]
    assert {f"{i:012d}" for i in CROWD_IDS} <= crowd_list()
    assert manifest["images"]["dropped"] == {"crowd": 2, "few_keypoints": 2, "no_annotation": 1}
    assert manifest["images"]["total"] == sum(n for _, n in SPECIES.values())
    for sp, (fam, n) in SPECIES.items():
        ids = sorted(kept[sp])
        assert len(ids) == n
        files = sorted((out / "ImageAnnotation" / fam / sp).glob("*.json"))
        assert [f.stem for f in files] == [f"{i:012d}" for i in ids]
        split = {int(f.stem): json.loads(f.read_text())["split"] for f in files}
        assert [i for i in ids if split[i] == "test"] == ids[-30:]
        assert [i for i in ids if split[i] == "val"] == ids[-50:-30][-20:]
        assert [i for i in ids if split[i] == "trn"] == ids[: max(0, n - 50)]
        assert manifest["images"]["per_species"][sp] == {
            "family": fam, "trn": max(0, n - 50), "val": min(20, max(0, n - 30)),
            "test": min(30, n),
        }  # fmt: skip
        assert len(list((out / "JPEGImages" / fam / sp).glob("*.jpg"))) == n
    # dropped images appear nowhere
    names = {p.stem for p in (out / "ImageAnnotation").rglob("*.json")}
    for ids in built["dropped"].values():
        assert not names & {f"{i:012d}" for i in ids}
    # the first annotation listed for an image is the one kept, even when a later one has a
    # smaller id; num_keypoints is the stored count (stored3: 3 stored, 2 visible, kept)
    first: dict[int, dict] = {}
    for a in built["anns"]:
        first.setdefault(a["image_id"], a)
    n_later_smaller = 0
    for f in sorted((out / "ImageAnnotation").rglob("*.json")):
        ann = json.loads(f.read_text())
        a = first[ann["image_id"]]
        assert ann["annotation_id"] == a["id"] and ann["bbox"] == a["bbox"]
        assert np.asarray(ann["keypoints"]).reshape(-1).tolist() == a["keypoints"]
        assert ann["num_keypoints"] == a["num_keypoints"]
        n_later_smaller += any(
            b["image_id"] == a["image_id"] and b["id"] < a["id"] for b in built["anns"]
        )
        assert ann["image"] == f"JPEGImages/{f.parent.parent.name}/{f.parent.name}/{f.stem}.jpg"
        assert (out / ann["image"]).is_file()
    assert n_later_smaller > 0
    assert sum(int(_vis(first[i]).sum()) < 3 for ids in kept.values() for i in ids) == 2
    assert sum(first[i]["iscrowd"] for ids in kept.values() for i in ids) == 2


def _split_images(out: Path, split: str) -> dict[str, list[dict]]:
    by_species: dict[str, list[dict]] = defaultdict(list)
    for f in sorted((out / "ImageAnnotation").rglob("*.json")):
        ann = json.loads(f.read_text())
        if ann["split"] == split:
            by_species[ann["species"]].append(ann)
    return by_species


def _pair_files(out: Path, split_dir: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "PairAnnotation" / split_dir).glob("*.json"))]  # fmt: skip


def _ids(p: dict) -> tuple[int, int]:
    return int(p["src_imname"][:12]), int(p["trg_imname"][:12])


@pytest.mark.parametrize("split", ["test", "val"])
def test_pairs_rules_and_caps(built: dict, split: str) -> None:
    out, manifest = built["out1"], built["manifest"]
    imgs = _split_images(out, split)
    family = {sp: fam for sp, (fam, _) in SPECIES.items()}
    cap_cs, cap_cf = {"test": (900, 30), "val": (400, 20)}[split]

    # intra-species: every candidate pair exactly once, oriented by the notebook's shuffle
    intra = _pair_files(out, split)
    got = Counter(frozenset(_ids(p)) | {p["category"]} for p in intra)
    expected = {
        frozenset((a["image_id"], b["image_id"], sp))
        for sp, ims in imgs.items()
        for a, b in combinations(ims, 2)
        if _ok(a, b)
    }
    assert set(got) == expected and max(got.values()) == 1
    assert manifest["pairs"][split] == len(expected)
    assert len(expected) < sum(len(v) * (len(v) - 1) // 2 for v in imgs.values())  # rule bites
    forward = sum(a < b for a, b in map(_ids, intra))
    assert 0 < forward < len(intra)  # both orientations occur

    # a v = 1 keypoint weighs 1/2: some pairs with 3 mutually visible keypoints are not pairs
    by_id = {a["image_id"]: a for ims in imgs.values() for a in ims}
    loose = {
        frozenset((a["image_id"], b["image_id"], sp))
        for sp, ims in imgs.items()
        for a, b in combinations(ims, 2)
        if (_vis(a) & _vis(b)).sum() >= 3
    }
    if split == "test":
        assert loose - expected

    # cross-species: Felidae only (the other families have one species); src species is the
    # earlier one in folder (name) order; test keeps 900 of > 900, val all of < 400
    fel = sorted(sp for sp in imgs if family[sp] == "Felidae")
    cand = {
        (a["image_id"], b["image_id"])
        for x, y in combinations(fel, 2)
        for a in imgs[x]
        for b in imgs[y]
        if _ok(a, b)
    }
    cs = _pair_files(out, split + "_cross_species")
    assert {_ids(p) for p in cs} <= cand and len(cs) == min(cap_cs, len(cand))
    assert len(cs) == manifest["pairs"][split + "_cross_species"]
    assert (len(cand) > cap_cs) == (split == "test")
    assert all(p["category"] == "Felidae" and p["src_species"] < p["trg_species"] for p in cs)
    assert len({p["pair_id"] for p in cs}) == len(cs)

    # cross-family: min(cap, candidates) per family pair, src family the earlier one
    cf = _pair_files(out, split + "_cross_family")
    per = Counter((p["src_family"], p["trg_family"]) for p in cf)
    fams = sorted({family[sp] for sp in imgs})
    for f1, f2 in combinations(fams, 2):
        n = sum(
            _ok(a, b)
            for s1 in imgs
            for s2 in imgs
            if family[s1] == f1 and family[s2] == f2
            for a in imgs[s1]
            for b in imgs[s2]
        )
        assert per[(f1, f2)] == min(cap_cf, n) and (n > cap_cf)
    assert sum(per.values()) == len(cf) == manifest["pairs"][split + "_cross_family"]
    assert all(p["category"] == "all" for p in cf)

    for p in intra + cs + cf:
        src, trg = by_id[_ids(p)[0]], by_id[_ids(p)[1]]
        assert p["src_species"] == src["species"] and p["trg_species"] == trg["species"]
        m = _vis(src) & _vis(trg)
        assert m.sum() >= 3 and p["kps_ids"] == [str(i) for i in np.nonzero(m)[0]]
    # trn pairs are replayed for the random state, not written: cat's 5 trn images, cap 50 x 5
    trn = _split_images(out, "trn")
    assert set(trn) == {"cat"} and len(trn["cat"]) == 5
    n_trn = sum(_ok(a, b) for a, b in combinations(trn["cat"], 2))
    assert manifest["pairs_not_written"]["trn"] == n_trn
    assert not (out / "PairAnnotation/trn").exists()


def test_deterministic_under_shuffled_input(built: dict) -> None:
    out1, out2 = built["out1"], built["out2"]
    assert (out1 / "manifest.json").read_bytes() == (out2 / "manifest.json").read_bytes()
    for sub in ("PairAnnotation", "ImageAnnotation"):
        f1 = sorted(p.relative_to(out1) for p in (out1 / sub).rglob("*.json"))
        f2 = sorted(p.relative_to(out2) for p in (out2 / sub).rglob("*.json"))
        assert f1 == f2 and f1
        for rel in f1:
            assert (out1 / rel).read_bytes() == (out2 / rel).read_bytes(), rel
    # --link-images wrote symlinks to the raw images, the default copies
    img = next((out2 / "JPEGImages").rglob("*.jpg"))
    assert img.is_symlink() and img.resolve().parent == (built["raw"] / "data").resolve()
    assert not next((out1 / "JPEGImages").rglob("*.jpg")).is_symlink()


def test_load_built_subsets(built: dict) -> None:
    out, manifest = built["out1"], built["manifest"]
    for subset, split_dir in (("intra-species", "test"),
                              ("cross-species", "test_cross_species"),
                              ("cross-family", "test_cross_family")):  # fmt: skip
        recs = load_ap10k(out, subset=subset)
        assert len(recs) == manifest["pairs"][split_dir] > 0
        assert [r.pair_id for r in recs] == sorted(r.pair_id for r in recs)
        for r in recs:
            assert r.dataset == "ap10k" and r.table_category == "all"
            assert r.src_kps.shape == (17, 2) and r.mutual.sum() >= 3
            assert r.pck_size == 10.5  # max(w, h) of the COCO box [1, 2, 10.5, 7.25]
            assert r.tgt_bbox == (1.0, 2.0, 11.5, 9.25) and r.tgt_size == (16, 12)
            assert r.flags["subset"] == subset
        assert check_images(recs) == []
        cats = {r.category for r in recs}
        if subset == "intra-species":
            assert cats == set(SPECIES)
        else:
            assert cats == ({"Felidae"} if subset == "cross-species" else {"all"})
    val = load_pairs("ap10k", out, split="val", subset="intra-species")
    assert len(val) == manifest["pairs"]["val"]


def test_rebuild_removes_stale_files(built: dict) -> None:
    out = built["out2"]
    assert not (out / "PairAnnotation/test/000000000001-000000000002:cat.json").exists()
    assert (out / "PairAnnotation/test/notes.txt").read_text() == "user file"
    assert (out / "pair_list.txt").read_text().count("\n") == sum(
        built["manifest"]["pairs"].values()
    )


def test_loader_completes_minimal_pair_files(built: dict, tmp_path: Path) -> None:
    """Pair files that only name their ImageAnnotations (as GeoAware-SC's) still load."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(built["out1"], out, symlinks=True)
    full = load_ap10k(out, subset="cross-family")
    for p in (out / "PairAnnotation/test_cross_family").glob("*.json"):
        d = json.loads(p.read_text())
        p.write_text(json.dumps({
            "category": d["category"],
            "src_json_path": "data/ap-10k/" + d["src_json_path"],
            "trg_json_path": "data/ap-10k/" + d["trg_json_path"],
        }))  # fmt: skip
    minimal = load_ap10k(out, subset="cross-family")
    assert len(minimal) == len(full)
    for a, b in zip(full, minimal, strict=True):
        assert a.pair_id == b.pair_id and a.src_image == b.src_image
        assert np.array_equal(a.tgt_kps, b.tgt_kps, equal_nan=True)
        assert a.pck_size == b.pck_size and a.tgt_size == b.tgt_size
