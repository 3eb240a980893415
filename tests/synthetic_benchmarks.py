"""Tiny synthetic copies of PF-Willow and SPair-U in their published file formats, for the
loader, scoring, path-check, download and CLI tests; not a test module.

PF-Willow: ``test_pairs_pf.csv`` with the header ``imageA, imageB, XA1..XA10, YA1..YA10,
XB1..XB10, YB1..YB10`` (CNNGeometric / WeakAlign's pair list, read column-wise by
ignacio-rocco/weakalign data/pf_dataset.py and juhongm999/dhpf data/pfwillow.py), images under
``PF-dataset/{class}({subclass})/``. SPair-U: SPair-71k's JSON schema (pair files and image
annotations, keys "0".."29" with nulls, as the public release writes them) in the
``ExtraPairAnnotation`` / ``ExtraImageAnnotation`` folders VICO-UoE/JamaisVu reads with
``--UNSEEN_KPS``. Images are small textured pictures (PIL), so the real MobileNetV2 stand-in
has something to match.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

#: PF-Willow fixture: (subclass folder, image stems); pairs are consecutive images of a folder
WILLOW = {"car(G)": ("car_0001", "car_0002", "car_0003"), "duck(S)": ("duck_0001", "duck_0002")}
WILLOW_SIZE = (96, 72)  # (W, H) of every PF-Willow fixture image


def _picture(path: Path, size: tuple[int, int], seed: int) -> None:
    """A textured RGB picture (smooth blobs over a gradient), deterministic in ``seed``."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0 * x], -1) * 120
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 14)
        colour = rng.uniform(0, 255, 3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + colour * blob
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)


def willow_points(seed: int) -> np.ndarray:
    """(10, 2) points inside a PF-Willow fixture image, deterministic in ``seed``."""
    rng = np.random.default_rng(1000 + seed)
    w, h = WILLOW_SIZE
    return np.column_stack([rng.uniform(5, w - 5, 10), rng.uniform(5, h - 5, 10)]).round(1)


def make_pfwillow(dest: Path, csv_inside: bool = False) -> list[dict]:
    """A PF-Willow folder at ``dest`` (``PF-dataset/`` and ``test_pairs_pf.csv``, or the CSV
    inside ``PF-dataset/``); returns the rows written (image names and (10, 2) points)."""
    header = ["imageA", "imageB"] + [
        f"{c}{i}" for c in ("XA", "YA", "XB", "YB") for i in range(1, 11)
    ]
    rows = []
    seed = 0
    for folder, stems in WILLOW.items():
        for stem in stems:
            seed += 1
            _picture(dest / "PF-dataset" / folder / f"{stem}.png", WILLOW_SIZE, seed)
        for a, b in zip(stems, stems[1:], strict=False):
            src, trg = willow_points(len(rows) * 2), willow_points(len(rows) * 2 + 1)
            rows.append(
                {
                    "imageA": f"PF-dataset/{folder}/{a}.png",
                    "imageB": f"PF-dataset/{folder}/{b}.png",
                    "src": src,
                    "trg": trg,
                }
            )
    path = dest / ("PF-dataset" if csv_inside else "") / "test_pairs_pf.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            cells = [*r["src"][:, 0], *r["src"][:, 1], *r["trg"][:, 0], *r["trg"][:, 1]]
            w.writerow([r["imageA"], r["imageB"], *(f"{v:g}" for v in cells)])
    return rows


#: SPair-U fixture: category -> (image stems, number of SPair-U points of the category)
SPAIR_U = {
    "cat": (("2008_000001", "2008_000002", "2008_000003"), 5),
    "dog": (("2009_000010", "2009_000011"), 4),
}
SPAIR_U_SIZE = (80, 64)


def _kps(stem: str, k: int, hidden: set[int]) -> dict[str, list[int] | None]:
    rng = np.random.default_rng(sum(map(ord, stem)))
    w, h = SPAIR_U_SIZE
    kps: dict[str, list[int] | None] = {str(i): None for i in range(30)}
    for i in range(k):
        if i not in hidden:
            kps[str(i)] = [int(rng.integers(4, w - 4)), int(rng.integers(4, h - 4))]
    return kps


def make_spair_u(dest: Path) -> list[dict]:
    """A SPair-71k folder at ``dest`` with SPair-U's ``Extra*`` annotations (and SPair-71k's
    own ``ImageAnnotation`` with other points, which SPair-U must not read); returns the pair
    files written. Point 1 of each category's second image is not visible (null)."""
    pairs = []
    number = 0
    for cat, (stems, k) in SPAIR_U.items():
        anns = {}
        for j, stem in enumerate(stems):
            _picture(dest / "JPEGImages" / cat / f"{stem}.jpg", SPAIR_U_SIZE, 50 + len(anns) + j)
            w, h = SPAIR_U_SIZE
            ann = {
                "filename": f"{stem}.jpg", "src_database": "synthetic", "image_width": w,
                "image_height": h, "image_depth": 3, "category": cat, "pose": "Left",
                "truncated": 0, "occluded": 0, "difficult": 0, "bndbox": [3, 5, 70, 60],
                "kps": _kps(stem, k, {1} if j == 1 else set()),
            }  # fmt: skip
            anns[stem] = ann
            for folder, kps in (("ExtraImageAnnotation", ann["kps"]), ("ImageAnnotation", None)):
                out = dest / folder / cat / f"{stem}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                body = ann if kps is not None else {**ann, "kps": _kps(stem + "x", 3, set())}
                out.write_text(json.dumps(body))
        for a, b in zip(stems, stems[1:], strict=False):
            number += 1
            ka, kb = anns[a]["kps"], anns[b]["kps"]
            ids = [i for i in map(str, range(k)) if ka[i] is not None and kb[i] is not None]
            pair = {
                "pair_id": number, "filename": f"{number:06d}-{a}-{b}:{cat}",
                "src_imname": f"{a}.jpg", "trg_imname": f"{b}.jpg",
                "src_imsize": [*SPAIR_U_SIZE, 3], "trg_imsize": [*SPAIR_U_SIZE, 3],
                "src_bndbox": anns[a]["bndbox"], "trg_bndbox": [10, 8, 50, 40],
                "category": cat, "src_pose": "Left", "trg_pose": "Left",
                "src_kps": [ka[i] for i in ids], "trg_kps": [kb[i] for i in ids], "kps_ids": ids,
                "mirror": 0, "viewpoint_variation": 0, "scale_variation": 0, "truncation": 0,
                "occlusion": 0,
            }  # fmt: skip
            out = dest / "ExtraPairAnnotation" / "test" / f"{pair['filename']}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(pair))
            pairs.append(pair)
    return pairs


#: TSS fixture: subset -> folder; image1 is 40 x 30 (W x H), image2 36 x 32 (so the pair's
#: common grid pads each direction's target)
TSS = {"FG3DCar": "car_001", "JODS": "bike_002", "PASCAL": "plane_003"}
TSS_SIZES = {1: (40, 30), 2: (36, 32)}


def write_flo(path: Path, flow: np.ndarray) -> None:
    """A Middlebury .flo file: float32 202021.25, int32 width, int32 height, float32 (u, v)."""
    h, w = flow.shape[:2]
    with open(path, "wb") as f:
        np.array([202021.25], "<f4").tofile(f)
        np.array([w, h], "<i4").tofile(f)
        flow.astype("<f4").tofile(f)


def tss_truth(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ground-truth flow (on image ``n``'s grid, pointing into the other image) and mask
    of a TSS fixture folder: a smooth field and an off-centre ellipse."""
    w, h = TSS_SIZES[n]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.stack([0.1 * x - 2 + n, 0.05 * y + 1], -1)
    mask = ((x - w * 0.55) / (w * 0.35)) ** 2 + ((y - h * 0.5) / (h * 0.4)) ** 2 <= 1
    return flow, mask


def make_tss(dest: Path) -> None:
    """A TSS folder at ``dest``: one folder per subset, each with both images, flows, masks."""
    for k, (subset, folder) in enumerate(TSS.items()):
        base = dest / subset / folder
        base.mkdir(parents=True)
        for n in (1, 2):
            _picture(base / f"image{n}.png", TSS_SIZES[n], 200 + 2 * k + n)
            flow, mask = tss_truth(n)
            write_flo(base / f"flow{n}.flo", flow)
            Image.fromarray((mask * 255).astype(np.uint8)).save(base / f"mask{n}.png")
