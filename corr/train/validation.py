"""Validation during training: PCK of the adapter being trained on the validation pairs.

As ``pck_train.py`` validates (Junyi42/GeoAware-SC @99fd6b6): the adapter in eval mode, no flip
alignment, window soft-argmax of radius ``SOFT_EVAL_WINDOW`` (or nearest neighbour when the
recipe's ``soft_eval`` is off), PCK per image averaged over pairs; the run keeps the adapter of
the best PCK@0.10 (SPair-71k, AP-10K) or PCK@0.05 (PF-Pascal). The matching is
:class:`corr.Matcher`'s, with the adapter attached and every other knob of the training
matcher, so a validation figure is what ``corr.eval`` gives for the same weights.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..eval.plan import EvalOptions
from ..io import atomic_write_bytes, atomic_write_json
from ..metrics import ALPHAS, alpha_key, evaluate
from ..protocols import MATCHER_KNOBS

__all__ = ["Validator", "write_validations", "SELECTION_ALPHA", "VALIDATION_MEMORY_BYTES"]

#: the PCK threshold that picks the best checkpoint (pck_train.py)
SELECTION_ALPHA = {"spair": 0.10, "ap10k": 0.10, "pfpascal": 0.05}


#: the validation's memory bound, as corr.eval's default ``--memory-cache-gb 4``: at most this
#: many bytes of features, and as much again of reused descriptors (SPair-71k's validation
#: images with their mirrors at the reference sizes would need tens of GB); past the bound,
#: entries are read back from the feature cache
VALIDATION_MEMORY_BYTES = int(EvalOptions.memory_cache_gb * 2**30)


class Validator:
    """PCK of ``adapter`` (trained in place) on ``records``, matched by a :class:`corr.Matcher`
    that shares the training matcher's extractors, feature cache and knobs."""

    def __init__(self, matcher, adapter, records, dataset: str, recipe) -> None:
        from ..matcher import Matcher

        # every knob of the training matcher but those the adapter replaces or sets
        replaced = {"fuse", "pca_dim", "pca_method", "fusion", "method", "window"}
        knobs = {k: getattr(matcher, k) for k in MATCHER_KNOBS if k not in replaced}
        self.matcher = Matcher(
            list(matcher.extractors),
            protocol=matcher.protocol,
            adapter=adapter,
            method="softargmax" if recipe.soft_eval else "nn",
            window=recipe.soft_eval_window,
            cache_dir=matcher.cache.root,
            memory_cache=max(8, 2 * len(records) + 8),
            memory_cache_bytes=VALIDATION_MEMORY_BYTES,
            device=matcher.device,
            exif_transpose=matcher.exif_transpose,
            **knobs,
        )
        self.adapter = adapter
        self.records = list(records)
        self.dataset = dataset
        self.alphas = ALPHAS[dataset]
        self.select = alpha_key(SELECTION_ALPHA[dataset])

    def predictions(self) -> list[np.ndarray]:
        """The adapter's predictions for every validation pair (original target pixels)."""
        from ..eval.plan import prompt_categories

        was_training = self.adapter.training
        self.adapter.eval()
        try:
            with torch.no_grad():
                return [
                    self.matcher.pair(r.src_image, r.tgt_image, prompt_categories(r))
                    .match(np.where(r.src_vis[:, None], r.src_kps, np.nan))
                    .keypoints1
                    for r in self.records
                ]
        finally:
            self.adapter.train(was_training)

    def run(self, step: int, position: int) -> dict[str, Any]:
        """One validation: the PCK table (``corr.metrics.evaluate``) and the selection score."""
        result = evaluate(self.records, self.predictions(), self.alphas)
        per_image = result["overall"]["pck_per_image"]
        score = per_image[self.select]
        return {
            "step": step,
            "position": position,
            "score": score,
            "score_is": f"PCK@{self.select} per image, mean over the validation pairs",
            "summary": ", ".join(
                f"PCK@{k} {100 * v:.1f}" for k, v in per_image.items() if v is not None
            )
            + " (per image)",
            "results": result,
        }


def write_validations(out: Path, validations: list[dict[str, Any]]) -> None:
    """``validation.json`` (every validation with its full table) and ``validation.csv`` (a row
    per validation: step, pairs seen, PCK per image and per keypoint at each alpha)."""
    atomic_write_json(out / "validation.json", {"validations": validations})
    keys = validations[0]["results"]["alphas"] if validations else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["step", "pairs_seen"]
        + [f"pck_per_image@{k}" for k in keys]
        + [f"pck_per_keypoint@{k}" for k in keys]
    )
    for v in validations:
        o = v["results"]["overall"]
        w.writerow(
            [v["step"], v["position"]]
            + [o["pck_per_image"][k] for k in keys]
            + [o["pck_per_keypoint"][k] for k in keys]
        )
    atomic_write_bytes(out / "validation.csv", buf.getvalue().encode())
