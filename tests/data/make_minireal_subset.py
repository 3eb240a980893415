"""Make ``tests/data/minireal`` from the full minireal copy in ``../shared/data/minireal``.

The test suite reads the subset this script wrote (it is committed); the suite never runs this
script. Re-run it only to rebuild the subset after minireal or ``CATEGORIES`` changes:

    python tests/data/make_minireal_subset.py [--src ../shared/data/minireal] [--out DIR]

Whole categories are kept: all their images (and flipped copies), image and pair annotations,
their lines of ``Layout/large/test.txt``, their PF-Pascal CSV rows, ``classes.json`` entries and
PF-Pascal images, and their entries of ``flip.json``, ``geo_groups.json``,
``keypoint_names.json`` and ``sources.json``. Files are copied byte for byte and kept lines are
copied unchanged (so pair ids, pair file names and class indices are minireal's); the JSON
tables are rewritten in minireal's own formatting (``indent=1``, key order kept). The output
is the same on every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
# small images, people and animals (and two insects with K > 30), mirror pairs, categories with
# three images (aic, horse10), one category without mirror pairs (horse10)
CATEGORIES = ("aic", "animalpose", "atrw", "crowdpose", "fly", "horse10", "locust", "zebra")
TABLES = ("flip.json", "geo_groups.json", "keypoint_names.json")


def _lines(path: Path) -> list[bytes]:
    """The lines of a text file with their line ends, as bytes."""
    return path.read_bytes().splitlines(keepends=True)


def _dump(data: object, path: Path) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)  # bytes only: no timestamps or modes


def make_subset(src: Path, out: Path, categories: tuple[str, ...] = CATEGORIES) -> dict:
    """Write the subset of ``src`` (a minireal folder) to ``out`` (replaced); returns counts."""
    cats = set(categories)
    if out.exists():
        shutil.rmtree(out)
    sp_src, sp_out = src / "SPair-71k", out / "SPair-71k"
    counts = {"images": 0, "flipped": 0, "pairs": 0, "mirror_pairs": 0, "pf_pairs": 0}
    for cat in sorted(cats):
        for sub in ("JPEGImages", "ImageAnnotation"):
            files = sorted((sp_src / sub / cat).iterdir())
            if not files:
                raise SystemExit(f"{sp_src / sub / cat}: no files (is {cat} a minireal category?)")
            for f in files:
                _copy(f, sp_out / sub / cat / f.name)
                if sub == "JPEGImages":
                    counts["flipped" if f.stem.endswith("_flip") else "images"] += 1
    layout = "Layout/large/test.txt"
    kept = [ln for ln in _lines(sp_src / layout) if ln.strip().rsplit(b":", 1)[-1].decode() in cats]
    (sp_out / layout).parent.mkdir(parents=True)
    (sp_out / layout).write_bytes(b"".join(kept))
    for ln in kept:
        name = ln.strip().decode() + ".json"
        _copy(sp_src / "PairAnnotation/test" / name, sp_out / "PairAnnotation/test" / name)
        mirror = json.loads((sp_src / "PairAnnotation/test" / name).read_text())["mirror"]
        counts["mirror_pairs" if mirror else "pairs"] += 1

    pf_src, pf_out = src / "PF-Pascal", out / "PF-Pascal"
    classes = json.loads((pf_src / "classes.json").read_text())
    chosen = {k: v for k, v in classes.items() if v in cats}
    pf_out.mkdir(parents=True)
    _dump(chosen, pf_out / "classes.json")
    header, *rows = _lines(pf_src / "test_pairs_pf_pascal.csv")
    rows = [r for r in rows if r.split(b",")[2].decode() in chosen]
    (pf_out / "test_pairs_pf_pascal.csv").write_bytes(b"".join([header, *rows]))
    counts["pf_pairs"] = len(rows)
    for name in sorted({c.decode() for r in rows for c in r.split(b",")[:2]}):
        _copy(pf_src / name, pf_out / name)  # PF-dataset-PASCAL/JPEGImages/{img}.jpg

    for name in TABLES:
        table = json.loads((src / name).read_text())
        _dump({k: v for k, v in table.items() if k in cats}, out / name)
    sources = json.loads((src / "sources.json").read_text())
    sources["images"] = {k: v for k, v in sources["images"].items() if k in cats}
    _dump(sources, out / "sources.json")
    counts["categories"] = len(cats)
    counts["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=HERE.parents[2] / "shared/data/minireal")
    ap.add_argument("--out", type=Path, default=HERE / "minireal")
    args = ap.parse_args(argv)
    if not (args.src / "SPair-71k").is_dir():
        raise SystemExit(f"{args.src}: not a minireal folder (no SPair-71k/)")
    readme = args.out / "README.md"  # hand-written: kept across rebuilds
    kept = readme.read_bytes() if readme.exists() else None
    counts = make_subset(args.src, args.out)
    if kept is not None:
        readme.write_bytes(kept)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
