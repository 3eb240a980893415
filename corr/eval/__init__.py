"""Benchmark evaluation: ``python -m corr.eval {spair,pfpascal,ap10k,score}``."""

from .runner import EvalOptions, evaluate_run, run_eval, score_run

__all__ = ["EvalOptions", "evaluate_run", "run_eval", "score_run"]
