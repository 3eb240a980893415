"""Benchmark evaluation: ``python -m corr.eval {spair,pfpascal,ap10k,score}``.

``plan`` (what a run evaluates), ``runner`` (the stages, resumable), ``store`` (the stored
predictions), ``lock`` (one run per folder), ``results`` (scores and their files), ``external``
(other tools' predictions), ``cli`` (the command line).
"""

from .plan import EvalOptions
from .results import evaluate_run, score_run
from .runner import run_eval

__all__ = ["EvalOptions", "evaluate_run", "run_eval", "score_run"]
