"""Evaluation metrics: PCK with per-image / per-keypoint averages and the geometry-aware subset;
the complementarity of two sets of predictions (per keypoint, per threshold); dense-flow PCK,
AEPE and smoothness (TSS, :mod:`corr.metrics.flow`)."""

from __future__ import annotations

from .complementarity import (
    OUTCOMES,
    complementarity,
    format_complementarity,
    write_complementarity_csv,
)
from .pck import ALPHAS, T_REF, alpha_key, evaluate, format_table, pair_distances, write_csv

__all__ = [
    "ALPHAS",
    "OUTCOMES",
    "T_REF",
    "alpha_key",
    "complementarity",
    "evaluate",
    "format_complementarity",
    "format_table",
    "pair_distances",
    "write_complementarity_csv",
    "write_csv",
]
