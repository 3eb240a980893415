"""Ours vs the reference's way of working, per pair, in rounds whose order alternates (A B, B A,
A B, ...: ABBA), so that a load that rises or falls during the run does not always fall on the
same side.

Round ``i`` takes pair ``i`` of the evaluation. **A** (ours): a fresh Matcher extracts the
pair's two images through :meth:`corr.Matcher.extract` and matches the pair from the cache.
**B** (the reference): the same pair, both images extracted anew the reference's way
(:mod:`.reference`). Each round keeps its samples, the load average before and after each side
and its own ratio.

Our cost per pair in a workload of ``I`` images and ``P`` pairs is, per round,
``s_per_image * I / P + s_match``. The ratio of a workload is the **median of the per-round
ratios** ``reference / ours`` (paired: both sides of a round ran back to back), with their
spread; it splits into a per-image ratio (extraction: the reference's tiles, full UNet and
unused VAE decode against ours), a per-pair ratio (fusion + matching) and the share that is
reuse (each image extracted once for ``2P / I`` pair sides).
"""

from __future__ import annotations

import math
import statistics
import time

from corr.devices import torch_threads

from .matching import new_matcher
from .reference import reference_pair
from .timing import loadavg, progress
from .workloads import amortised_per_pair

TARGET_RATIO = 10.0
#: the reference's stages that are per image (both images of a pair) and per pair
REF_PER_IMAGE = ("ref_letterbox", "ref_sd_total", "ref_dino_forward")
REF_PER_PAIR = ("ref_fusion", "ref_match_points")


def round_order(i: int) -> tuple[str, str]:
    """Round ``i`` (from 0): ours first in even rounds, the reference first in odd ones."""
    return ("A", "B") if i % 2 == 0 else ("B", "A")


def run_rounds(bench, ref_sd, ref_dino) -> list[dict]:
    args, stages = bench.args, bench.stages
    n_rounds = max(1, args.reference_pairs)
    rounds: list[dict] = []
    for i in range(n_rounds):
        a, b = bench.pairs[i % len(bench.pairs)]
        src, tgt = str(bench.images[a]), str(bench.images[b])
        order = round_order(i)
        progress(
            f"A/B round {i + 1}/{n_rounds} ({bench.images[a].name} -> {bench.images[b].name}), "
            f"order {''.join(order)}, load {loadavg()}"
        )
        rnd: dict = {"round": i + 1, "pair": [a, b], "order": list(order), "started_at": []}
        for side in order:
            rnd["started_at"].append(round(time.time(), 3))
            rnd[f"loadavg_before_{side}"] = loadavg()
            if side == "A":  # ours, two-stage on the pair's images (empty cache)
                matcher = new_matcher(bench, 2)
                with stages.time("ab_ours_extract"):
                    matcher.extract(
                        [src, tgt],
                        batch_size=args.batch_size,
                        num_workers=args.num_workers,
                        progress=False,
                    )
                with stages.time("ab_ours_match"), torch_threads(bench.pair_threads):
                    matcher.match(src, tgt, bench.queries[a])
            else:  # the reference's way on the same pair
                start = {k: len(stages.samples[k]) for k in (*REF_PER_IMAGE, *REF_PER_PAIR)}
                with stages.time("ab_reference_pair"):
                    reference_pair(
                        bench.images[a],
                        bench.images[b],
                        ref_sd,
                        ref_dino,
                        bench.queries[a],
                        stages,
                        args.pca_dim,
                    )
                spent = {k: sum(stages.samples[k][n:]) for k, n in start.items()}
                rnd["reference_extract_s_per_image"] = round(
                    sum(spent[k] for k in REF_PER_IMAGE) / 2, 4
                )
                rnd["reference_match_s_per_pair"] = round(sum(spent[k] for k in REF_PER_PAIR), 4)
        rnd["ours_extract_s_per_image"] = round(stages.last("ab_ours_extract") / 2, 4)
        rnd["ours_match_s_per_pair"] = round(stages.last("ab_ours_match"), 4)
        rnd["reference_s_per_pair"] = round(stages.last("ab_reference_pair"), 4)
        rnd["loadavg_after"] = loadavg()
        rounds.append(rnd)
        progress(
            f"A/B round {i + 1}/{n_rounds} done: ours {rnd['ours_extract_s_per_image']:.3f} s/image "
            f"+ {rnd['ours_match_s_per_pair']:.3f} s/pair matching, reference "
            f"{rnd['reference_s_per_pair']:.3f} s/pair; load after {rnd['loadavg_after']}"
        )
        bench.report.sections["ab_rounds"] = rounds  # kept even if a later round is killed
    return rounds


def _spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "per_round": [round(v, 2) for v in values],
    }


def ab_ratio(rounds: list[dict], images: int, pairs: int) -> dict:
    """Reference / ours per pair for ``images`` extracted once for ``pairs`` pairs: the median
    (and spread) of the paired per-round ratios; the medians of each side are given too."""
    ours = [
        amortised_per_pair(r["ours_extract_s_per_image"], r["ours_match_s_per_pair"], images, pairs)
        for r in rounds
    ]
    ref = [r["reference_s_per_pair"] for r in rounds]
    paired = [b / a for a, b in zip(ours, ref, strict=True)]
    return {
        "images": images,
        "pairs": pairs,
        "ours_s_per_pair": [round(x, 4) for x in ours],
        "reference_s_per_pair": ref,
        "ours_median": round(statistics.median(ours), 4),
        "reference_median": round(statistics.median(ref), 4),
        "ratio": round(statistics.median(paired), 2),
        "spread": _spread(paired),
        "per_round": [round(x, 2) for x in paired],
    }


def split_ratios(rounds: list[dict], spair: dict, cold: dict) -> dict:
    """The SPair ratio taken apart: per image (extraction), per pair (fusion + matching), and
    the reuse factor ``ratio(workload) / ratio(no reuse)`` with its share of the ratio
    (``log(reuse factor) / log(ratio)``), each as the median of the paired per-round values."""
    per_image = [r["reference_extract_s_per_image"] / r["ours_extract_s_per_image"] for r in rounds]
    per_pair = [r["reference_match_s_per_pair"] / r["ours_match_s_per_pair"] for r in rounds]
    reuse = [s / c for s, c in zip(spair["per_round"], cold["per_round"], strict=True)]
    ratio, factor = spair["ratio"], statistics.median(reuse)
    return {
        "per_image": _spread(per_image),
        "per_pair": _spread(per_pair),
        "reuse_factor": _spread(reuse),
        "reuse_share_of_ratio": round(math.log(factor) / math.log(ratio), 3)
        if ratio > 1 and factor > 0
        else None,
    }


def put_ratios(bench, rounds: list[dict]) -> None:
    r = bench.report
    w = bench.workload
    n_img, n_pairs = len(bench.images), len(bench.pairs)
    spair = ab_ratio(rounds, w["images"], w["pairs"])
    this = ab_ratio(rounds, n_img, n_pairs)
    cold = ab_ratio(rounds, 2, 1)
    parts = split_ratios(rounds, spair, cold)
    k = len(rounds)
    ctx = f"{bench.ctx_pair}; median over {k} A/B rounds of alternating order"
    r.put(
        "ab_ours_extract",
        statistics.median(x["ours_extract_s_per_image"] for x in rounds),
        "s/image",
        "A/B, ours: Matcher.extract of the pair's images",
        ctx,
        [x["ours_extract_s_per_image"] for x in rounds],
    )
    r.put(
        "ab_ours_match",
        statistics.median(x["ours_match_s_per_pair"] for x in rounds),
        "s/pair",
        "A/B, ours: the pair matched from the cache",
        ctx,
        [x["ours_match_s_per_pair"] for x in rounds],
    )
    r.put(
        "ref_per_pair",
        spair["reference_median"],
        "s/pair",
        "A/B, reference: per pair, both images extracted anew",
        bench.ctx_ref + f"; {k} rounds",
        spair["reference_s_per_pair"],
    )
    paired = "median of the paired per-round ratios"
    for key, res, what in (
        (
            "ratio_spair",
            spair,
            f"SPair-71k test workload ({w['images']:,} images, {w['pairs']:,} pairs)",
        ),
        ("ratio_eval", this, f"this evaluation ({n_pairs} pairs over {n_img} images)"),
        ("ratio_cold", cold, "no reuse (both images extracted for every pair)"),
    ):
        sp = res["spread"]
        r.put(
            key,
            res["ratio"],
            "x",
            f"ratio reference / ours per pair, {what}",
            f"{paired} ({sp['min']}-{sp['max']}); {bench.ctx_short}",
            res["per_round"],
        )
    for key, what in (
        ("per_image", "per image (extraction)"),
        ("per_pair", "per pair (fusion + matching, features cached)"),
        ("reuse_factor", "from reuse (SPair workload / no reuse)"),
    ):
        sp = parts[key]
        r.put(
            f"ratio_{key}",
            sp["median"],
            "x",
            f"ratio reference / ours, {what}",
            f"{paired} ({sp['min']}-{sp['max']}); {bench.ctx_short}",
            sp["per_round"],
        )
    r.sections["ratio"] = {
        "what": "reference seconds per pair / ours: the median of the per-round ratios of A/B "
        "rounds whose order alternates (ABBA), with their spread",
        "workload": w,
        "spair_test": spair,
        "this_evaluation": this,
        "no_reuse": cold,
        "split": parts,
        "target": TARGET_RATIO,
        "target_met_spair": spair["ratio"] >= TARGET_RATIO,
        "target_met_this_evaluation": this["ratio"] >= TARGET_RATIO,
    }
    r.sections["reference"] = {"pairs": k, "per_pair_s": spair["reference_median"]}
