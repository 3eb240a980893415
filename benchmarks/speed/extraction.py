"""Images per second through :meth:`corr.Matcher.extract` for several batch sizes and numbers
of DataLoader workers; every variant starts from an empty cache and extracts the same photos
(decode + letterbox in the workers, the models on batches, a writer thread filling the cache).

With warm-up passes (``--warmup``, 1 by default on CUDA) each variant first extracts one
untimed batch of its own size, so first-call costs of that shape (kernel choice, allocator
growth, a compilation) stay out of its rate. Each variant records its own peak memory."""

from __future__ import annotations

from .matching import new_matcher
from .timing import progress


def parse_variant(text: str) -> tuple[int, int]:
    """``"4x2"`` -> batch size 4, 2 workers."""
    try:
        b, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"extraction variant must look like BATCHxWORKERS (e.g. 4x2), got {text!r}"
        ) from None
    if b < 1 or w < 0:
        raise ValueError(f"extraction variant {text!r}: batch >= 1 and workers >= 0")
    return b, w


def run_extraction(bench) -> None:
    """Each ``--extract-variants`` entry once; the evaluation's own setting is taken from its
    stage 1 (same images, empty cache) instead of being run twice."""
    args, stages, r = bench.args, bench.stages, bench.report
    paths = [str(p) for p in bench.images]
    results = []
    for text in args.extract_variants:
        batch, workers = parse_variant(text)
        key = f"extract_b{batch}_w{workers}"
        if (batch, workers) == (
            args.batch_size,
            args.num_workers,
        ) and "eval_extract" in stages.samples:
            seconds, n, source = stages.samples["eval_extract"][0], len(paths), "evaluation stage 1"
            peak, peak_in = bench.memory.phases.get("evaluation"), "evaluation phase"
        else:
            for _ in range(bench.report.config.get("warmup") or 0):
                progress(f"extraction warm-up: one batch of {batch} (untimed)")
                new_matcher(bench, batch).extract(
                    paths[:batch], batch_size=batch, num_workers=0, progress=False
                )
            progress(f"extraction: {len(paths)} images, batch {batch}, {workers} workers")
            matcher = new_matcher(bench, len(paths))
            bench.memory.mark()
            with stages.time(key):
                rep = matcher.extract(paths, batch_size=batch, num_workers=workers, progress=False)
            seconds, n, source = stages.last(key), rep.computed, "this stage"
            peak, peak_in = round(bench.memory.mark(), 1), "this variant"
        results.append(
            {
                "batch_size": batch,
                "num_workers": workers,
                "images": n,
                "seconds": round(seconds, 4),
                "images_per_s": float(f"{n / seconds:.4g}"),
                "s_per_image": round(seconds / n, 4),
                "measured_in": source,
                "peak_mb": peak,
                "peak_mb_of": peak_in,
            }
        )
        r.put(
            key,
            n / seconds,
            "images/s",
            f"Matcher.extract, batch {batch}, {workers} workers ({n} images)",
            bench.ctx_pair,
        )
    best = max(results, key=lambda x: x["images_per_s"])
    r.sections["extraction"] = {
        "what": "Matcher.extract from an empty cache: decode, letterbox, SD + DINOv2, cache write",
        "variants": results,
        "best": best,
    }
