"""Evaluation metrics: PCK with per-image / per-keypoint averages and the geometry-aware subset."""

from __future__ import annotations

from .pck import ALPHAS, T_REF, alpha_key, evaluate, format_table, pair_distances, write_csv

__all__ = [
    "ALPHAS",
    "T_REF",
    "alpha_key",
    "evaluate",
    "format_table",
    "pair_distances",
    "write_csv",
]
