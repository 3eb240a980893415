"""Hostile data sets for the path-safety tests; not a test module.

Each case puts, in one field of one data file, a name that leads outside the data set folder
(``..``, an absolute path, or a folder beside it), and places a bait file where that name leads:
a loader that opens the bait has read outside its folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from minireal_subset import copy_spair
from synthetic_ap10k import make_ap10k_raw
from synthetic_benchmarks import make_pfwillow, make_spair_u


@dataclass
class Case:
    """One hostile data set: load ``dataset`` from ``root``; the error must name ``file``,
    ``line`` (None for JSON files) and ``field``; ``baits`` are the files outside."""

    name: str
    dataset: str  # "spair", "spair-u", "pfpascal", "pfwillow", "ap10k", or "ap10k-raw"
    root: Path
    file: Path
    field: str
    line: int | None
    baits: list[Path]


def _bait(path: Path, data: bytes = b"{not json") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _spair(minireal: Path, box: Path, name: str) -> Case:
    root = box / "data" / "SPair-71k"
    stems = copy_spair(minireal, root)
    pair = root / "PairAnnotation" / "test" / f"{stems[0]}.json"
    data = json.loads(pair.read_text())
    cat, src = data["category"], Path(data["src_imname"]).stem
    if name == "spair-layout-line":
        layout = root / "Layout" / "large" / "test.txt"
        lines = layout.read_text().splitlines()
        layout.write_text("\n".join([lines[0], "../../../0000-evilpair", *lines[1:]]) + "\n")
        evil = _bait(box / "data" / "0000-evilpair.json", pair.read_bytes())
        return Case(name, "spair", root, layout, "pair stem", 2, [evil])
    if name == "spair-category":
        data["category"] = "../../outcat"  # ImageAnnotation/../../outcat: beside the folder
        baits = [_bait(box / "data" / "outcat" / f"{src}.json")]
    elif name == "spair-category-absolute":
        data["category"] = str(box / "abscat")
        baits = [_bait(box / "abscat" / f"{src}.json")]
    else:  # spair-src_imname, spair-trg_imname
        field = name.split("-", 1)[1]
        data[field] = "../../../outside.jpg"
        photo = next((root / "JPEGImages" / cat).glob("*.jpg")).read_bytes()
        baits = [_bait(box / "data" / "outside.jpg", photo)]
    pair.write_text(json.dumps(data))
    field = "category" if name.startswith("spair-category") else name.split("-", 1)[1]
    return Case(name, "spair", root, pair, field, None, baits)


def _pfpascal(minireal: Path, box: Path, name: str) -> Case:
    src = minireal / "PF-Pascal"
    top = box / "data" / "PF-Pascal"
    shutil.copytree(src / "PF-dataset-PASCAL", top / "PF-dataset-PASCAL")
    lines = (src / "test_pairs_pf_pascal.csv").read_text().splitlines()
    photo = (top / lines[1].split(",")[0]).read_bytes()
    row = lines[2].split(",")
    if name == "pfpascal-beside":  # root is PF-dataset-PASCAL/, names are relative to its parent
        root = top / "PF-dataset-PASCAL"
        row[0] = "elsewhere/secret.jpg"
        bait = _bait(top / "elsewhere" / "secret.jpg", photo)
        field = "source_image"
    else:
        root = top
        field = name.split("-", 1)[1]
        row[0 if field == "source_image" else 1] = "../../secret.jpg"
        bait = _bait(box / "secret.jpg", photo)
    lines[2] = ",".join(row)
    csv = root / "test_pairs_pf_pascal.csv"
    csv.write_text("\n".join(lines) + "\n")
    return Case(name, "pfpascal", root, csv, field, 3, [bait])


def _spair_u(box: Path, name: str) -> Case:
    """SPair-U's relabelled pairs (synthetic, SPair-71k's format in the ``Extra*`` folders)."""
    root = box / "data" / "SPair-U"
    pairs = make_spair_u(root)
    pair = root / "ExtraPairAnnotation" / "test" / f"{pairs[0]['filename']}.json"
    data = json.loads(pair.read_text())
    field = name.split("-", 2)[2]
    if field == "category":
        src = Path(data["src_imname"]).stem
        data["category"] = "../../outcat"  # ExtraImageAnnotation/../../outcat: beside the folder
        baits = [_bait(box / "data" / "outcat" / f"{src}.json")]
    else:
        photo = (root / "JPEGImages" / data["category"] / data[field]).read_bytes()
        data[field] = "../../../outside.jpg"
        baits = [_bait(box / "data" / "outside.jpg", photo)]
    pair.write_text(json.dumps(data))
    return Case(name, "spair-u", root, pair, field, None, baits)


def _pfwillow(box: Path, name: str) -> Case:
    """PF-Willow's pair list (synthetic, the published CSV's columns) naming an image outside."""
    root = box / "data" / "PF-WILLOW"
    make_pfwillow(root)
    csv = root / "test_pairs_pf.csv"
    lines = csv.read_text().splitlines()
    field = name.split("-", 1)[1]
    row = lines[1].split(",")
    column = 0 if field == "imageA" else 1
    photo = (root / row[column]).read_bytes()
    row[column] = "../secret.png"
    lines[1] = ",".join(row)
    csv.write_text("\n".join(lines) + "\n")
    return Case(name, "pfwillow", root, csv, field, 2, [_bait(box / "data" / "secret.png", photo)])


def _ap10k(box: Path, name: str) -> Case:
    from corr.datasets.ap10k import build_ap10k

    raw = box / "raw"
    make_ap10k_raw(raw)
    if name == "ap10k-raw-file_name":
        ann = raw / "annotations" / "ap10k-train-split1.json"
        part = json.loads(ann.read_text())
        part["images"][0]["file_name"] = "../../secret.jpg"
        ann.write_text(json.dumps(part))
        bait = _bait(box / "secret.jpg", next((raw / "data").glob("*.jpg")).read_bytes())
        return Case(name, "ap10k-raw", raw, ann, "file_name", None, [bait])
    root = box / "data" / "AP-10K"
    build_ap10k(raw, root)
    pair = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    data = json.loads(pair.read_text())
    field = name.split("-", 1)[1]
    if field.endswith("_json_path"):
        side = field.split("_")[0]
        del data[f"{side}_kps"]  # the loader then completes the pair from the named annotation
        good = root / data[field]
        data[field] = "../../outann.json"
        baits = [_bait(box / "outann.json", good.read_bytes())]
    else:
        good = root / data[field]
        data[field] = "../outside.jpg"
        baits = [_bait(box / "data" / "outside.jpg", good.read_bytes())]
    pair.write_text(json.dumps(data))
    return Case(name, "ap10k", root, pair, field, None, baits)


CASES = [
    "spair-category",
    "spair-category-absolute",
    "spair-src_imname",
    "spair-trg_imname",
    "spair-layout-line",
    "pfpascal-source_image",
    "pfpascal-target_image",
    "pfpascal-beside",
    "spair-u-category",
    "spair-u-trg_imname",
    "pfwillow-imageA",
    "pfwillow-imageB",
    "ap10k-src_json_path",
    "ap10k-trg_json_path",
    "ap10k-src_image",
    "ap10k-trg_image",
    "ap10k-raw-file_name",
]


def make_case(name: str, minireal: Path, box: Path) -> Case:
    """Build the hostile data set ``name`` (one of :data:`CASES`) under the folder ``box``."""
    if name.startswith("spair-u"):
        return _spair_u(box, name)
    if name.startswith("spair"):
        return _spair(minireal, box, name)
    if name.startswith("pfwillow"):
        return _pfwillow(box, name)
    if name.startswith("pfpascal"):
        return _pfpascal(minireal, box, name)
    return _ap10k(box, name)


def load_case(case: Case, out: Path) -> object:
    """Run the loader (or the AP-10K builder, writing to ``out``) over the hostile data set."""
    from corr.datasets import load_pairs
    from corr.datasets.ap10k import build_ap10k

    if case.dataset == "ap10k-raw":
        return build_ap10k(case.root, out)
    return load_pairs(case.dataset, case.root)
