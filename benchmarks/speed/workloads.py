"""Inputs and workloads: photos, pairs, query points, model sizes, and the SPair-71k test
workload extrapolated from measured rates."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
REFERENCE_SIZES = {"sd": 960, "dino": 840, "tile": 512}
TINY_SIZES = {"sd": 192, "dino": 168, "tile": 128}

#: The SPair-71k test split: 12,234 pairs over at most 1,800 images (the whole data set); with
#: flip alignment every source is also extracted mirrored, at most 1,800 more images. An upper
#: bound: :func:`spair_workload` counts the distinct images from the split file when present.
SPAIR_TEST = {"name": "SPair-71k test", "images": 1800, "images_flip": 3600, "pairs": 12234}


def default_spair_root() -> Path:
    """Where the benchmark looks for SPair-71k's split file: ``data/SPair-71k`` of the
    repository, else ``shared/data/SPair-71k``."""
    for root in (REPO / "data" / "SPair-71k", shared_dir() / "data" / "SPair-71k"):
        if root.is_dir():
            return root
    return REPO / "data" / "SPair-71k"


def spair_workload(root: Path | None = None, split: str = "test") -> dict:
    """The SPair-71k ``split`` workload: pairs and distinct images (sources, for flip) counted
    from ``{root}/Layout/large/{split}.txt`` (lines ``{id}-{src}-{trg}:{category}``) when it is
    there (``"source": "split file"``), else :data:`SPAIR_TEST`'s upper bound (``"source":
    "upper bound"``, with the path that was missing)."""
    root = default_spair_root() if root is None else Path(root)
    path = root / "Layout" / "large" / f"{split}.txt"
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError:
        return {**SPAIR_TEST, "source": "upper bound", "missing": str(path)}
    images, sources = set(), set()
    for line in lines:
        stem, _, category = line.partition(":")
        parts = stem.split("-")
        if len(parts) < 3 or not category:
            raise ValueError(f"{path}: not an SPair-71k pair line: {line!r}")
        src, tgt = parts[1], "-".join(parts[2:])
        images.update({(category, src), (category, tgt)})
        sources.add((category, src))
    return {
        "name": f"SPair-71k {split}",
        "images": len(images),
        "images_flip": len(images) + len(sources),
        "pairs": len(lines),
        "source": "split file",
        "file": str(path),
    }


def shared_dir() -> Path:
    return Path(os.environ.get("CORR_SHARED", REPO.parent / "shared")).resolve()


def default_images() -> list[Path]:
    """Real photos: the bundled demo assets, then animal photos of ``shared/data/minireal``."""
    jpeg = shared_dir() / "data" / "minireal" / "SPair-71k" / "JPEGImages"
    candidates = [
        REPO / "corr" / "samples" / "gazelle.jpg",
        REPO / "corr" / "samples" / "jaguar.jpg",
        jpeg / "atrw" / "atrw_003464.jpg",
        jpeg / "atrw" / "atrw_000061.jpg",
        jpeg / "horse10" / "horse10_0244.jpg",
        jpeg / "horse10" / "horse10_0292.jpg",
        jpeg / "macaque" / "macaque_d47f1b1ee9d3217e.jpg",
        jpeg / "zebra" / "zebra_810.jpg",
    ]
    return [p for p in candidates if p.is_file()]


def draw_pairs(n_images: int, n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n_pairs`` (src, tgt) index pairs over ``n_images`` images: every unordered pair once in
    a seeded random order, then the reversed pairs, repeating as needed."""
    combos = list(itertools.combinations(range(n_images), 2))
    order = np.random.default_rng(seed).permutation(len(combos))
    pool = [combos[i] for i in order] + [(b, a) for a, b in (combos[i] for i in order)]
    return [pool[i % len(pool)] for i in range(n_pairs)]


def query_grid(width: int, height: int, n: int) -> np.ndarray:
    """``n`` source points on a regular grid over the central 80% of the image."""
    cols = int(np.ceil(np.sqrt(n * width / height)))
    rows = int(np.ceil(n / cols))
    xs = np.linspace(0.1, 0.9, cols) * (width - 1)
    ys = np.linspace(0.1, 0.9, rows) * (height - 1)
    pts = np.array([(x, y) for y in ys for x in xs], dtype=np.float64)
    return pts[:n]


def twin_pairs(n: int) -> list[tuple[int, int]]:
    """Left/right twins for flip alignment on ``n`` query points: (0, 1), (2, 3), ...
    (timing only: which points are twins does not change the work)."""
    return [(i, i + 1) for i in range(0, n - 1, 2)]


def round_to(value: float, multiple: int, minimum: int | None = None) -> int:
    out = int(round(value / multiple)) * multiple
    return max(out, minimum if minimum is not None else multiple)


def resolve_sizes(args) -> dict[str, int]:
    """SD / DINO input sides and the reference's tile side from the options."""
    base = TINY_SIZES if args.tiny else REFERENCE_SIZES
    sd = (
        args.sd_size
        if args.sd_size is not None
        else round_to(base["sd"] * args.resolution_scale, 64)
    )
    dino = (
        args.dino_size
        if args.dino_size is not None
        else round_to(base["dino"] * args.resolution_scale, 14)
    )
    tile = (
        args.tile_size
        if args.tile_size is not None
        else min(sd, round_to(base["tile"] * sd / base["sd"], 64))
    )
    if sd % 64 or dino % 14:
        raise SystemExit(
            f"--sd-size must be a multiple of 64 and --dino-size of 14 (got {sd}, {dino})"
        )
    if tile > sd or tile % 64 or (sd - tile) % 64:
        raise SystemExit(
            f"reference tile {tile} must be a multiple of 64, <= SD size {sd}, "
            "and SD - tile a multiple of 64"
        )
    return {"sd": sd, "dino": dino, "tile": tile}


def workload_seconds(
    n_images: int, n_pairs: int, images_per_s: float, pairs_per_s: float
) -> dict[str, float]:
    """Seconds for a two-stage run: ``n_images / images_per_s + n_pairs / pairs_per_s``."""
    extract = n_images / images_per_s
    match = n_pairs / pairs_per_s
    return {
        "extract_s": extract,
        "match_s": match,
        "total_s": extract + match,
        "per_pair_s": (extract + match) / n_pairs,
    }


def amortised_per_pair(s_per_image: float, s_per_pair: float, images: int, pairs: int) -> float:
    """Our cost per pair when ``images`` images are each extracted once for ``pairs`` pairs."""
    return s_per_image * images / pairs + s_per_pair


def put_extrapolation(bench) -> None:
    """The SPair-71k test workload from the measured rates (an extrapolation, not a run):
    ours = images / images_per_s + pairs / pairs_per_s (the distinct images of the split file
    when present, else 1,800 as an upper bound; with flip also the mirrored sources); the
    reference = pairs x its seconds per pair (nothing is reused)."""
    r, sec = bench.report, bench.report.sections
    f = r.figures
    if "extraction" in sec:
        best = sec["extraction"]["best"]
        ips = best["images_per_s"]
        ips_src = f"Matcher.extract batch {best['batch_size']}, {best['num_workers']} workers"
    else:
        ips = f["eval_extract_rate"]["value"]
        ips_src = "evaluation stage 1"
    w = bench.workload
    images_from = _images_from(w)
    out: dict = {
        "what": "extrapolation from the measured rates, not a measured run",
        "workload": w,
        "images_from": images_from,
        "images_per_s": ips,
        "images_per_s_from": ips_src,
    }
    base = f"extrapolated from {ips:.4g} images/s ({ips_src})"
    pps = f["match_cached_rate"]["value"]
    plain = workload_seconds(w["images"], w["pairs"], ips, pps)
    out.update(pairs_per_s=pps, ours=_rounded(plain))
    r.put(
        "spair_ours_h",
        plain["total_s"] / 3600,
        "h total",
        f"SPair-71k test, ours: {w['images']:,} images + {w['pairs']:,} pairs",
        f"{base} and {pps:.4g} pairs/s; images: {images_from}; {bench.ctx_short}",
    )
    r.put(
        "spair_ours_per_pair",
        plain["per_pair_s"],
        "s/pair",
        "SPair-71k test, ours: per pair (extraction amortised)",
        f"{base}; {bench.ctx_short}",
    )
    if "match_cached_flip_rate" in f:
        pps_f = f["match_cached_flip_rate"]["value"]
        flip = workload_seconds(w["images_flip"], w["pairs"], ips, pps_f)
        out.update(pairs_per_s_flip=pps_f, ours_flip=_rounded(flip))
        r.put(
            "spair_ours_flip_h",
            flip["total_s"] / 3600,
            "h total",
            f"SPair-71k test with flip, ours: {w['images_flip']:,} images + {w['pairs']:,} pairs",
            f"{base} and {pps_f:.4g} pairs/s with flip; {bench.ctx_short}",
        )
    if "ref_per_pair" in f:
        ref_s = f["ref_per_pair"]["value"]
        out["reference"] = {"s_per_pair": ref_s, "total_s": round(ref_s * w["pairs"], 1)}
        r.put(
            "spair_ref_h",
            ref_s * w["pairs"] / 3600,
            "h total",
            f"SPair-71k test, reference's way: {w['pairs']:,} pairs x its s/pair",
            f"extrapolated from the A/B median; {bench.ctx_ref}",
        )
    sec["extrapolation"] = out


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in d.items()}


def _images_from(workload: dict) -> str:
    if workload.get("source") == "split file":
        return f"distinct images counted in {workload['file']}"
    return f"upper bound (no split file at {workload.get('missing')})"
