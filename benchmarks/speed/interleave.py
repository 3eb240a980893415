"""Ours vs the reference's way of working, per pair, in alternating rounds (A B A B ...).

Round ``i`` takes pair ``i`` of the evaluation. **A** (ours): a fresh Matcher extracts the
pair's two images through :meth:`corr.Matcher.extract` and matches the pair from the cache.
**B** (the reference): the same pair, both images extracted anew the reference's way
(:mod:`.reference`). Each round keeps its samples and the load average before and after it,
so that a load that rises during the run weighs on both sides alike.

Our cost per pair in a workload of ``I`` images and ``P`` pairs is, per round,
``s_per_image * I / P + s_match``; the ratio is ``median(B) / median(A cost)`` over rounds.
"""

from __future__ import annotations

import statistics
import time

from .matching import new_matcher
from .reference import reference_pair
from .timing import loadavg, progress
from .workloads import SPAIR_TEST, amortised_per_pair

TARGET_RATIO = 10.0


def run_rounds(bench, ref_sd, ref_dino) -> list[dict]:
    args, stages = bench.args, bench.stages
    n_rounds = max(1, args.reference_pairs)
    rounds: list[dict] = []
    for i in range(n_rounds):
        a, b = bench.pairs[i % len(bench.pairs)]
        src, tgt = str(bench.images[a]), str(bench.images[b])
        before = loadavg()
        progress(
            f"A/B round {i + 1}/{n_rounds} ({bench.images[a].name} -> {bench.images[b].name}), "
            f"load before {before}"
        )
        events = []
        # A: ours, two-stage on the pair's images (empty cache)
        events.append(("A", time.time()))
        matcher = new_matcher(bench, 2)
        with stages.time("ab_ours_extract"):
            matcher.extract(
                [src, tgt],
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                progress=False,
            )
        with stages.time("ab_ours_match"):
            matcher.match(src, tgt, bench.queries[a])
        # B: the reference's way on the same pair
        events.append(("B", time.time()))
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
        after = loadavg()
        rnd = {
            "round": i + 1,
            "pair": [a, b],
            "order": [e[0] for e in events],
            "started_at": [round(e[1], 3) for e in events],
            "ours_extract_s_per_image": round(stages.last("ab_ours_extract") / 2, 4),
            "ours_match_s_per_pair": round(stages.last("ab_ours_match"), 4),
            "reference_s_per_pair": round(stages.last("ab_reference_pair"), 4),
            "loadavg_before": before,
            "loadavg_after": after,
        }
        rounds.append(rnd)
        progress(
            f"A/B round {i + 1}/{n_rounds} done: ours {rnd['ours_extract_s_per_image']:.3f} s/image "
            f"+ {rnd['ours_match_s_per_pair']:.3f} s/pair matching, reference "
            f"{rnd['reference_s_per_pair']:.3f} s/pair; load after {after}"
        )
        bench.report.sections["ab_rounds"] = rounds  # kept even if a later round is killed
    return rounds


def ab_ratio(rounds: list[dict], images: int, pairs: int) -> dict:
    """Reference / ours per pair from the interleaved samples, for ``images`` extracted once
    for ``pairs`` pairs: ``median(reference) / median(ours)`` over rounds."""
    ours = [
        amortised_per_pair(r["ours_extract_s_per_image"], r["ours_match_s_per_pair"], images, pairs)
        for r in rounds
    ]
    ref = [r["reference_s_per_pair"] for r in rounds]
    return {
        "images": images,
        "pairs": pairs,
        "ours_s_per_pair": [round(x, 4) for x in ours],
        "reference_s_per_pair": ref,
        "ours_median": round(statistics.median(ours), 4),
        "reference_median": round(statistics.median(ref), 4),
        "ratio": round(statistics.median(ref) / statistics.median(ours), 2),
        "per_round": [round(b / a, 2) for a, b in zip(ours, ref, strict=True)],
    }


def put_ratios(bench, rounds: list[dict]) -> None:
    r = bench.report
    n_img, n_pairs = len(bench.images), len(bench.pairs)
    spair = ab_ratio(rounds, SPAIR_TEST["images"], SPAIR_TEST["pairs"])
    this = ab_ratio(rounds, n_img, n_pairs)
    cold = ab_ratio(rounds, 2, 1)
    k = len(rounds)
    ctx = f"{bench.ctx_pair}; median over {k} interleaved A/B rounds"
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
    r.put(
        "ratio_spair",
        spair["ratio"],
        "x",
        "ratio reference / ours per pair, SPair-71k test workload (1,800 images, 12,234 pairs)",
        f"interleaved samples, ours = s/image x 1800/12234 + s/pair; {bench.ctx_short}",
    )
    r.put(
        "ratio_eval",
        this["ratio"],
        "x",
        f"ratio reference / ours per pair, this evaluation ({n_pairs} pairs over {n_img} images)",
        f"interleaved samples; {bench.ctx_short}",
    )
    r.put(
        "ratio_cold",
        cold["ratio"],
        "x",
        "ratio reference / ours per pair, no reuse (both images extracted for every pair)",
        f"interleaved samples; {bench.ctx_short}",
    )
    r.sections["ratio"] = {
        "what": "reference seconds per pair / ours, from interleaved A/B rounds (median)",
        "spair_test": spair,
        "this_evaluation": this,
        "no_reuse": cold,
        "target": TARGET_RATIO,
        "target_met_spair": spair["ratio"] >= TARGET_RATIO,
        "target_met_this_evaluation": this["ratio"] >= TARGET_RATIO,
    }
    r.sections["reference"] = {"pairs": k, "per_pair_s": spair["reference_median"]}
