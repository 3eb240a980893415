#!/usr/bin/env python
"""``N`` distinct real photos for the GPU check's benchmark runs.

The repository's photos (the bundled minireal subset, and the sample photos where the
checkout has them), each image once
(equal pixels are one image, whatever the file), then their horizontal mirrors, then central
crops (90 %, 80 %, ...), written as JPEG (quality 95) to ``--out``, until there are ``N``.
Every photo has different pixels, so none is taken from the feature cache: the cache key is a
hash of the decoded pixels. Writes the list (path, source, kind, size) to ``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[2]
SOURCES = (
    REPO / "tests" / "data" / "minireal",
    REPO / "corr" / "samples",
)


def originals() -> list[Path]:
    files: list[Path] = []
    for root in SOURCES:
        if root.is_dir():
            files += sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return files


def pixel_hash(img: Image.Image) -> str:
    arr = np.asarray(img.convert("RGB"))
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def make(n: int, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    photos: list[dict] = []
    base: list[tuple[Path, Image.Image]] = []
    for path in originals():
        img = Image.open(path).convert("RGB")
        h = pixel_hash(img)
        if h in seen:
            continue
        seen.add(h)
        base.append((path, img))
        photos.append(
            {"path": str(path), "source": str(path.relative_to(REPO)), "kind": "original",
             "size": list(img.size)}
        )  # fmt: skip
        if len(photos) == n:
            return photos
    if not base:
        raise SystemExit(f"no photos found under {', '.join(map(str, SOURCES))}")
    variants = [("mirrored", lambda im: ImageOps.mirror(im))]
    for frac in (0.9, 0.8, 0.7, 0.6, 0.5):
        variants.append((f"crop{int(frac * 100)}", lambda im, f=frac: _centre_crop(im, f)))
    for kind, fn in variants:
        for path, img in base:
            new = fn(img)
            h = pixel_hash(new)
            if h in seen:
                continue
            seen.add(h)
            dest = out / f"{path.stem}_{kind}.jpg"
            new.save(dest, quality=95)
            photos.append(
                {"path": str(dest), "source": str(path.relative_to(REPO)), "kind": kind,
                 "size": list(new.size)}
            )  # fmt: skip
            if len(photos) == n:
                return photos
    raise SystemExit(f"only {len(photos)} distinct photos could be made, {n} asked for")


def _centre_crop(img: Image.Image, frac: float) -> Image.Image:
    w, h = img.size
    cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", required=True, help="folder for the mirrored and cropped photos")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    photos = make(args.n, Path(args.out))
    kinds: dict[str, int] = {}
    for p in photos:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    Path(args.json).write_text(
        json.dumps({"n": len(photos), "kinds": kinds, "photos": photos}, indent=2) + "\n"
    )
    print(f"{len(photos)} distinct photos: {kinds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
