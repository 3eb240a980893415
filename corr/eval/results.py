"""The scores of a run: PCK tables from the stored predictions (both averages, the geo-aware
subset, flip statistics), ``results.json`` / ``results.csv``, the printed tables, re-scoring."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..datasets import PairRecord
from ..io import atomic_write_json
from ..metrics import ALPHAS, evaluate, format_table, write_csv
from .lock import RunLock
from .plan import EvalOptions, Tables, apply_tables_rule, load_records, tables_for
from .store import PredictionStore, points_from_json

T_REF = {
    "spair": "max(width, height) of the target's bounding box",
    "ap10k": "max(w, h) of the target's COCO box",
    "pfpascal": "max(width, height) of the target image",
    "spair-u": "max(width, height) of the target's bounding box",
    "pfwillow": "max(width, height) of the tight box around the target's keypoints",
}


def environment() -> dict[str, Any]:
    """Package versions, Python, platform and the git commit of this checkout."""
    import importlib.metadata as md

    from .. import __version__

    versions: dict[str, str | None] = {"corr": __version__}  # distribution: semcorr
    for pkg in (
        "torch",
        "diffusers",
        "timm",
        "numpy",
        "huggingface_hub",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    repo = Path(__file__).resolve().parents[2]
    commit = dirty = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def score_run(
    opts: EvalOptions,
    records: Sequence[PairRecord],
    entries: dict[str, dict],
    tables: Tables,
) -> dict:
    """PCK of the stored predictions (both averages, geo-aware subset, flip statistics)."""
    alphas = ALPHAS[opts.dataset]
    missing = [r.pair_id for r in records if r.pair_id not in entries]
    if missing:
        raise ValueError(
            f"{len(missing)} pairs have no prediction yet (first: {missing[0]}); run the evaluation to finish them"
        )
    if opts.pck not in ("<", "<="):
        raise ValueError(f"pck must be '<' or '<=', got {opts.pck!r}")
    inclusive = opts.pck == "<="
    preds = [points_from_json(entries[r.pair_id]["pred"]) for r in records]
    out: dict[str, Any] = {
        "dataset": opts.dataset,
        "split": opts.split,
        "subset": opts.subset,
        "n_pairs": len(records),
        "metric": {
            "pck": (
                "a prediction is correct if ||pred - gt|| / T_ref <= alpha (inclusive, DIFT)"
                if inclusive
                else "a prediction is correct if ||pred - gt|| < alpha * T_ref (strict)"
            )
            + ", over keypoints visible in both images",
            "T_ref": T_REF[opts.dataset],
            "alphas": list(alphas),
            "per_image": "PCK of each pair, averaged over pairs (overall = mean over all pairs)",
            "per_keypoint": "all correct keypoints over all evaluated keypoints",
            "frame": "distances in original target-image pixels",
            "geo_groups": tables.geo_source,
        },
        "results": evaluate(records, preds, alphas, geo_groups=tables.geo, inclusive=inclusive),
        "notes": [tables.note] if tables.note else [],
    }
    if opts.flip:
        plain = [points_from_json(entries[r.pair_id]["flip"]["pred_plain"]) for r in records]
        out["results_without_alignment"] = evaluate(
            records, plain, alphas, geo_groups=tables.geo, inclusive=inclusive
        )
        per_cat: dict[str, dict] = {}
        for r in records:
            c = per_cat.setdefault(r.category, {"n_pairs": 0, "n_flipped": 0})
            c["n_pairs"] += 1
            c["n_flipped"] += int(entries[r.pair_id]["flip"]["flipped"])
        for c in per_cat.values():
            c["flip_rate"] = c["n_flipped"] / c["n_pairs"]
        total = sum(c["n_pairs"] for c in per_cat.values())
        flipped = sum(c["n_flipped"] for c in per_cat.values())
        out["flip"] = {
            "per_category": dict(sorted(per_cat.items())),
            "overall": {"n_pairs": total, "n_flipped": flipped, "flip_rate": flipped / total},
        }
    return out


def flip_summary(flip: dict) -> str:
    rows = [f"{'category':<20} {'pairs':>6} {'flipped':>8} {'rate':>6}"]
    for cat, c in flip["per_category"].items():
        rows.append(f"{cat:<20} {c['n_pairs']:>6} {c['n_flipped']:>8} {c['flip_rate']:>6.2f}")
    o = flip["overall"]
    rows.append(f"{'overall':<20} {o['n_pairs']:>6} {o['n_flipped']:>8} {o['flip_rate']:>6.2f}")
    return "Pose alignment: how often the mirrored source was chosen (per pair)\n" + "\n".join(rows)


def write_results(out: Path, results: dict) -> None:
    atomic_write_json(out / "results.json", results)
    write_csv(results["results"], out / "results.csv")
    if "results_without_alignment" in results:
        write_csv(results["results_without_alignment"], out / "results_without_alignment.csv")


def print_results(results: dict, out: Path, log: Callable[[str], None] = print) -> None:
    """The tables a run prints (and ``score`` prints again): PCK, and with flip alignment the
    PCK without it and the flip rates; then the notes and where the files are."""
    alphas = ALPHAS[results["dataset"]]
    log(format_table(results["results"], alphas))
    if "results_without_alignment" in results:
        log("\nWithout pose alignment (same pairs):")
        log(format_table(results["results_without_alignment"], alphas))
        log(flip_summary(results["flip"]))
    for note in results["notes"]:
        log(f"note: {note}")
    skipped = results.get("skipped") or []
    if skipped:
        log(f"skipped {len(skipped)} pair(s) with bad images (listed in results.json)")
    log(f"results: {out / 'results.json'} and {out / 'results.csv'}")


def options_from_config(config: dict) -> EvalOptions:
    """The :class:`EvalOptions` a run folder's ``config.json`` (its ``"run"`` part) records."""
    run = config["run"]
    return EvalOptions(
        dataset=run["dataset"],
        root=run["root"],
        split=run["split"],
        subset=run.get("subset"),
        flip=run.get("flip", False),
        flip_table=run.get("flip_table"),
        geo_groups=run.get("geo_groups"),
        tables_rule=run.get("tables_rule", "ids"),
        pck=run.get("pck", "<"),
        limit=run.get("limit"),
    )


def evaluate_run(out: str | Path, log: Callable[[str], None] = print) -> dict:
    """Re-score a finished run folder from its predictions (no features needed)."""
    out = Path(out)
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{out} is not an evaluation folder: {cfg_path} is missing")
    config = json.loads(cfg_path.read_text())
    opts = options_from_config(config)
    with RunLock(out, log):  # not while an evaluation is writing into the folder
        return _rescore(out, opts, config, log)


def _rescore(out: Path, opts: EvalOptions, config: dict, log: Callable[[str], None]) -> dict:
    store = PredictionStore(out, own=None)  # read-only: re-scoring never rewrites a file
    for problem in store.problems:
        log(f"warning: {problem}")
    listed = [r for r in load_records(opts) if r.pair_id in store.entries]
    tables = tables_for(opts, sorted({r.table_category for r in listed}))
    listed, tables = apply_tables_rule(listed, tables, opts.tables_rule)
    records = [r for r in listed if "pred" in store.entries[r.pair_id]]
    previous = (
        json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    )
    results = score_run(opts, records, store.entries, tables)
    for key in ("skipped", "timing"):
        if key in previous:
            results[key] = previous[key]
    results["config"] = config
    results["environment"] = environment()
    write_results(out, results)
    print_results(results, out, log)
    return results
