"""The two-stage evaluation (as ``corr/eval/runner.py`` runs it): stage 1 extracts every
unique image once through :meth:`corr.Matcher.extract`, stage 2 matches the pairs from the
feature cache. Stage 2 is what "pairs/s of the cached matching stage" measures: co-PCA +
fusion + matching per pair, the features already cached; with flip alignment also the mirrored
source's descriptors, the instance-matching distances and the aligned queries."""

from __future__ import annotations

import numpy as np

from corr.devices import torch_threads

from .timing import progress
from .workloads import twin_pairs


def new_matcher(bench, n_images: int):
    """A Matcher on the benchmark's models with an empty in-memory cache holding
    ``n_images`` images (plain and mirrored) for every extractor."""
    import corr

    return corr.Matcher(
        [bench.sd, bench.dino],
        fuse=0.5,
        pca_dim=bench.args.pca_dim,
        device=bench.device,
        memory_cache=4 * n_images + 8,
    )


def run_evaluation(bench):
    """Stage 1 + stage 2 over ``--pairs`` pairs drawn over ``--images`` photos; returns the
    matcher, its cache filled, for :func:`run_flip_matching`."""
    args, stages, r = bench.args, bench.stages, bench.report
    n_img, n_pairs = len(bench.images), len(bench.pairs)
    matcher = new_matcher(bench, n_img)
    progress(
        f"evaluation stage 1: extract {n_img} images (Matcher.extract, batch "
        f"{args.batch_size}, {args.num_workers} workers)"
    )
    with stages.time("eval_extract"):
        rep = matcher.extract(
            [str(p) for p in bench.images],
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            progress=False,
        )
    progress(f"evaluation stage 2: match {n_pairs} pairs from the feature cache")
    misses = matcher.cache.misses
    with torch_threads(bench.pair_threads):  # the pair stage's own threads, as corr.eval
        for a, b in bench.pairs:
            with stages.time("match_cached"):
                matcher.match(str(bench.images[a]), str(bench.images[b]), bench.queries[a])
    if matcher.cache.misses != misses:
        raise RuntimeError("the cached matching stage missed the feature cache")
    t_ext = stages.last("eval_extract")
    match = stages.samples["match_cached"]
    total = t_ext + sum(match)
    variant = f"batch {args.batch_size}, {args.num_workers} workers"
    r.put(
        "eval_extract",
        t_ext,
        "s total",
        f"evaluation stage 1: extract {rep.computed} images ({variant})",
        bench.ctx_pair,
    )
    r.put(
        "eval_extract_rate",
        rep.computed / t_ext,
        "images/s",
        f"evaluation stage 1: images per second ({variant})",
        bench.ctx_pair,
    )
    r.put(
        "match_cached",
        float(np.mean(match)),
        "s/pair",
        f"evaluation stage 2: one pair from the cache (co-PCA + fusion + {args.points} points)",
        bench.ctx_match,
        match,
    )
    r.put(
        "match_cached_rate",
        len(match) / sum(match),
        "pairs/s",
        "evaluation stage 2: pairs per second, features cached",
        bench.ctx_match,
    )
    r.put(
        "eval_total",
        total,
        "s total",
        f"evaluation: {n_pairs} pairs over {n_img} images (stage 1 + stage 2)",
        bench.ctx_pair,
    )
    r.put(
        "eval_per_pair",
        total / n_pairs,
        "s/pair",
        "evaluation, per pair (each image extracted once)",
        bench.ctx_pair,
    )
    r.sections["evaluation"] = {
        "pairs": n_pairs,
        "images": n_img,
        "extractions": rep.computed,
        "extract": rep.as_dict(),
        "extract_s": round(t_ext, 4),
        "match_s_per_pair": [round(x, 6) for x in match],
        "total_s": round(total, 4),
        "per_pair_s": round(total / n_pairs, 4),
    }
    return matcher


def run_flip_matching(bench, matcher) -> None:
    """Extract the mirrored sources (stage 1 with flip), then match the pairs with flip
    alignment from the cache (stage 2 with flip)."""
    args, stages, r = bench.args, bench.stages, bench.report
    sources = sorted({a for a, _ in bench.pairs})
    progress(f"flip: extract {len(sources)} mirrored sources, then match with flip alignment")
    with stages.time("flip_extract"):
        rep = matcher.extract(
            [str(bench.images[i]) for i in sources],
            mirrored=True,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            progress=False,
        )
    misses = matcher.cache.misses
    twins = twin_pairs(args.points)
    with torch_threads(bench.pair_threads):
        for a, b in bench.pairs:
            with stages.time("match_cached_flip"):
                matcher.match(
                    str(bench.images[a]),
                    str(bench.images[b]),
                    bench.queries[a],
                    flip=True,
                    flip_pairs=twins,
                )
    if matcher.cache.misses != misses:
        raise RuntimeError("the cached flip matching stage missed the feature cache")
    t_ext = stages.last("flip_extract")
    match = stages.samples["match_cached_flip"]
    r.put(
        "flip_extract_rate",
        rep.computed / t_ext,
        "images/s",
        f"flip: mirrored sources extracted per second (batch {args.batch_size}, "
        f"{args.num_workers} workers)",
        bench.ctx_pair,
    )
    r.put(
        "match_cached_flip",
        float(np.mean(match)),
        "s/pair",
        "stage 2 with flip alignment: one pair from the cache",
        bench.ctx_match,
        match,
    )
    r.put(
        "match_cached_flip_rate",
        len(match) / sum(match),
        "pairs/s",
        "stage 2 with flip alignment: pairs per second, features cached",
        bench.ctx_match,
    )
    r.sections["flip"] = {
        "mirrored_sources": rep.computed,
        "extract": rep.as_dict(),
        "match_s_per_pair": [round(x, 6) for x in match],
    }
