"""Benchmark evaluation: ``python -m corr.eval {spair,spair-u,pfpascal,pfwillow,ap10k,tss,score,
compare}``.

``plan`` (what a run evaluates), ``runner`` (the stages, resumable), ``store`` (the stored
predictions), ``lock`` (one run per folder), ``results`` (scores and their files), ``external``
(other tools' predictions), ``compare`` (the complementarity of two finished runs), ``tss``
(dense flow on TSS), ``extractor_args`` (the extractor options of the command lines), ``cli``
(the command line).

The public names are imported on first use, so that ``python -m corr.eval`` reaches its own
code (which turns Ctrl-C into "interrupted, resume with ...") before torch is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

_EXPORTS = {
    "EvalOptions": "corr.eval.plan",
    "compare_runs": "corr.eval.compare",
    "evaluate_run": "corr.eval.results",
    "score_run": "corr.eval.results",
    "run_eval": "corr.eval.runner",
}

__all__ = ["EvalOptions", "compare_runs", "evaluate_run", "run_eval", "score_run"]

if TYPE_CHECKING:  # pragma: no cover
    from .compare import compare_runs
    from .plan import EvalOptions
    from .results import evaluate_run, score_run
    from .runner import run_eval


__getattr__ = lazy_getattr("corr.eval", _EXPORTS, globals())
