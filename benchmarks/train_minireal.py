#!/usr/bin/env python
"""Does supervised training work? A short training run on real photos, measured.

Builds a training layout from the bundled minireal subset (``tests/data/minireal``, SPair-71k
layout, 8 categories, 27 pairs): for each category the *last* listed pair is held out
(``val``, 8 pairs) and the others are the training pairs (``trn``, 19). minireal has 2-3 images
per category, so the held-out pairs are new pairings of images the training also sees, not
new instances: they say whether training generalises beyond the exact pairs, not beyond the
photos. Then trains an adapter with ``corr.train`` on the ImageNet MobileNetV2 stand-in (the
real small model of the tests) and reports PCK@0.10 (per image, bbox) on both splits for the
stand-in's own features (zero-shot, no adapter) and for the adapter after training.

    python benchmarks/train_minireal.py --out out/train_minireal [--epochs 20]

Writes ``OUT/summary.json`` and ``OUT/summary.csv`` (with the configuration that made them) and
the training run in ``OUT/run`` (``python -m corr.train`` writes the same files).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MINIREAL = REPO / "tests" / "data" / "minireal"
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


def make_splits(minireal: Path, dest: Path) -> dict[str, list[str]]:
    """A copy of minireal's SPair-71k folder with ``trn`` and ``val`` splits: the last listed
    pair of each category held out. Returns ``{"trn": stems, "val": stems}``."""
    src = minireal / "SPair-71k"
    for sub in ("JPEGImages", "ImageAnnotation"):
        shutil.copytree(src / sub, dest / sub, dirs_exist_ok=True)
    stems = (src / "Layout/large/test.txt").read_text().split()
    last = {s.rsplit(":", 1)[1]: s for s in stems}  # the last stem of each category
    splits = {"trn": [s for s in stems if s not in last.values()], "val": list(last.values())}
    for split, chosen in splits.items():
        (dest / "PairAnnotation" / split).mkdir(parents=True, exist_ok=True)
        for s in chosen:
            shutil.copy(src / "PairAnnotation/test" / f"{s}.json", dest / "PairAnnotation" / split)
        (dest / "Layout/large").mkdir(parents=True, exist_ok=True)
        (dest / "Layout/large" / f"{split}.txt").write_text("\n".join(chosen) + "\n")
    return splits


def pck(matcher, records, alpha: float = 0.10) -> float:
    """PCK@alpha per image (mean over pairs) of ``matcher``'s predictions."""
    from corr.metrics import alpha_key, evaluate

    preds = [
        matcher.match(r.src_image, r.tgt_image, np.where(r.src_vis[:, None], r.src_kps, np.nan))[
            "keypoints1"
        ]
        for r in records
    ]
    return evaluate(records, preds, (alpha,))["overall"]["pck_per_image"][alpha_key(alpha)]


def run(
    out: Path,
    epochs: int,
    seed: int,
    recipe_name: str = "geoaware",
    progress: bool = True,
    extra: dict | None = None,
) -> dict:
    """Train on the ``trn`` pairs and measure; the figures of ``summary.json``. ``extra``:
    more recipe fields (e.g. ``{"lr": 5e-3, "scheduler": None}``)."""
    import corr
    from corr.adapters import load_adapter
    from corr.datasets import load_pairs
    from corr.train import TrainOptions, train

    data = out / "minireal-splits" / "SPair-71k"
    splits = make_splits(MINIREAL, data)
    cache = out / "cache"
    recipe = {"epochs": epochs, "projection_dim": 128, "seed": seed, "eval_every": 10**6}
    recipe.update(extra or {})
    opts = TrainOptions(
        dataset="spair",
        root=str(data),
        recipe=recipe_name,
        overrides=recipe,
        flip_table=str(MINIREAL / "flip.json"),
    )

    def matcher(**kw):
        return corr.Matcher([MOBILENET], device="cpu", cache_dir=cache, memory_cache=256, **kw)

    start = time.perf_counter()
    results = train(opts, matcher(), out / "run", progress=progress)
    seconds = time.perf_counter() - start
    records = {s: load_pairs("spair", data, split=s) for s in splits}
    rows = {}
    zero_shot = matcher()
    trained = matcher(adapter=load_adapter(out / "run" / "last.safetensors"))
    for split, recs in records.items():
        rows[split] = {"zero-shot": pck(zero_shot, recs), "trained adapter": pck(trained, recs)}
    summary = {
        "what": "PCK@0.10 per image (bbox), minireal subset split by pair (held out: the last "
        "pair of each category), ImageNet MobileNetV2 stand-in features",
        "pairs": {s: len(v) for s, v in splits.items()},
        "pck@0.10": rows,
        "loss": results["loss"],
        "steps": results["steps"],
        "train_seconds": round(seconds, 1),
        "config": {"recipe": results["config"]["recipe"], "command": " ".join(sys.argv)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["split", "pairs", "pck@0.10 zero-shot", "pck@0.10 trained adapter"])
    for split, r in rows.items():
        w.writerow([split, len(records[split]), r["zero-shot"], r["trained adapter"]])
    (out / "summary.csv").write_text(buf.getvalue())
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/train_minireal")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--recipe", default="geoaware", choices=("geoaware", "sd-dino-s"))
    p.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    p.add_argument("--constant-lr", action="store_true", help="no schedule: the lr throughout")
    args = p.parse_args(argv)
    extra = {} if args.lr is None else {"lr": args.lr}
    if args.constant_lr:
        extra["scheduler"] = None
    s = run(Path(args.out), args.epochs, args.seed, args.recipe, extra=extra)
    print(json.dumps(s["pck@0.10"], indent=2))
    first, last = s["loss"]["first_epoch_mean"], s["loss"]["last_epoch_mean"]
    print(f"mean loss of the first epoch {first:.3f}, of the last {last:.3f} ({s['steps']} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
