"""Dense-flow metrics (TSS): PCK of the flow, average end-point error and first-order smoothness,
as Junyi42/sd-dino@b85df18 ``pck_tss.py`` defines them (``run_evaluation_semantic``,
``get_smooth``).

A flow field is ``(H, W, 2)`` ``(u, v)`` on the target's grid (``source = target + flow``,
original pixels); ``mask`` ``(H, W)`` bool is the target's foreground, where flows are compared.
Both are evaluated on the pair's common grid: the two images padded at the right and bottom to
the larger height and width (sd-dino's ``pad_to_same_shape``), the mask zero in the padding.

* end-point error (EPE) of a pixel: ``||flow_est - flow_gt||``; a pair's AEPE is its mean over
  the mask;
* PCK@alpha of a pair: the fraction of mask pixels with ``EPE <= alpha * T_ref`` (inclusive, as
  sd-dino's ``epe.le``), ``T_ref`` = max(H, W) of the source image;
* smoothness of a flow: the flow set to 0 outside the mask, then
  ``(sum |f(x, y) - f(x + 1, y)| + sum |f(x, y) - f(x, y + 1)|) / (mask pixels)`` over both
  components and the whole grid (the last column and row compared with themselves: 0); lower is
  smoother. The jump to 0 at the mask's edge counts, as in the reference.

Averages: per image = mean over pairs of each pair's figure (sd-dino's ``*_per_image``, its
AEPE and smoothness); per pixel = all correct pixels / all evaluated pixels, each pair with its
own T_ref (sd-dino's ``*_per_dataset`` applies the last pair's T_ref to every pixel).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .pck import alpha_key

__all__ = [
    "FLOW_ALPHAS",
    "pad_to",
    "smoothness",
    "score_flow_pair",
    "summarize_flow",
    "format_flow_table",
    "write_flow_csv",
]

#: the thresholds sd-dino's TSS evaluation reports
FLOW_ALPHAS = (0.01, 0.05, 0.10, 0.15)


def pad_to(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``a`` (``(H, W, ...)``) zero-padded at the bottom and right to ``shape`` ``(H', W')``."""
    h, w = a.shape[:2]
    if h > shape[0] or w > shape[1]:
        raise ValueError(f"cannot pad a {h} x {w} field to {shape[0]} x {shape[1]}")
    pad = [(0, shape[0] - h), (0, shape[1] - w)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad)


def smoothness(flow: np.ndarray, mask: np.ndarray) -> float | None:
    """First-order smoothness of ``flow`` ``(H, W, 2)`` over ``mask`` ``(H, W)`` (module
    docstring); None when the mask is empty."""
    n = int(mask.sum())
    if n == 0:
        return None
    f = np.where(mask[..., None], flow.astype(np.float64), 0.0)
    gx = np.abs(f[:, :-1] - f[:, 1:]).sum()
    gy = np.abs(f[:-1] - f[1:]).sum()
    return float((gx + gy) / n)


def score_flow_pair(
    est: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    t_ref: float,
    grid: tuple[int, int],
    alphas: Sequence[float] = FLOW_ALPHAS,
) -> dict[str, Any]:
    """One pair's figures: ``est``, ``gt`` ``(H_t, W_t, 2)`` and ``mask`` ``(H_t, W_t)`` on the
    target's grid, padded to ``grid`` (the pair's common ``(H, W)``). Returns ``n_pixels``,
    ``correct`` per alpha key, ``aepe``, ``smoothness_est`` and ``smoothness_gt`` (None for an
    empty mask)."""
    if est.shape != gt.shape or gt.shape[:2] != mask.shape or gt.shape[2:] != (2,):
        raise ValueError(
            f"flow shapes differ: estimate {est.shape}, ground truth {gt.shape}, mask "
            f"{mask.shape} (all on the target's grid, (H, W, 2) and (H, W))"
        )
    if not (np.isfinite(t_ref) and t_ref > 0):
        raise ValueError(f"invalid T_ref {t_ref}")
    est, gt, mask = pad_to(est, grid), pad_to(gt, grid), pad_to(mask.astype(bool), grid)
    epe = np.linalg.norm(est[mask].astype(np.float64) - gt[mask].astype(np.float64), axis=1)
    epe[~np.isfinite(epe)] = np.inf  # a missing estimate is wrong
    return {
        "n_pixels": int(mask.sum()),
        "t_ref": float(t_ref),
        "correct": {alpha_key(a): int((epe <= a * t_ref).sum()) for a in alphas},
        "aepe": float(epe.mean()) if epe.size else None,
        "smoothness_est": smoothness(est, mask),
        "smoothness_gt": smoothness(gt, mask),
    }


def _block(scores: Sequence[dict], keys: list[str]) -> dict[str, Any]:
    used = [s for s in scores if s["n_pixels"]]
    pixels = sum(s["n_pixels"] for s in used)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "n_pairs": len(scores),
        "n_pairs_without_pixels": len(scores) - len(used),
        "n_pixels": pixels,
        "pck_per_image": {k: mean([s["correct"][k] / s["n_pixels"] for s in used]) for k in keys},
        "pck_per_pixel": {
            k: (sum(s["correct"][k] for s in used) / pixels if pixels else None) for k in keys
        },
        "aepe": mean([s["aepe"] for s in used]),
        "smoothness_est": mean([s["smoothness_est"] for s in used]),
        "smoothness_gt": mean([s["smoothness_gt"] for s in used]),
    }


def summarize_flow(scores: Sequence[dict], alphas: Sequence[float] = FLOW_ALPHAS) -> dict:
    """Per-subset and overall figures of :func:`score_flow_pair` results (each with its
    ``"subset"``): ``{"alphas", "definition", "subsets": {name: block}, "overall": block}``,
    ``block`` = n_pairs, n_pixels, pck_per_image, pck_per_pixel (fractions), aepe (pixels),
    smoothness_est, smoothness_gt (module docstring)."""
    keys = [alpha_key(a) for a in alphas]
    subsets: dict[str, list[dict]] = {}
    for s in scores:
        subsets.setdefault(s["subset"], []).append(s)
    return {
        "alphas": keys,
        "definition": (
            "PCK@alpha: EPE = ||flow_est - flow_gt|| <= alpha * T_ref (inclusive) over the "
            "target's foreground mask, T_ref = max(H, W) of the source image; per image = mean "
            "over pairs, per pixel = all correct / all evaluated pixels; AEPE (pixels) and "
            "smoothness (mean first-order difference of the flow within the mask, lower is "
            "smoother) are means over pairs; fractions in [0, 1]"
        ),
        "subsets": {name: _block(v, keys) for name, v in subsets.items()},
        "overall": _block(list(scores), keys),
    }


def _num(v: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if v is None else f"{scale * v:.{digits}f}"


def format_flow_table(summary: dict) -> str:
    """Plain-text table of :func:`summarize_flow`: a row per subset and overall; PCK per image
    and per pixel in %, AEPE and both smoothness figures."""
    keys = summary["alphas"]
    cols = ["pairs"] + [f"{k} img" for k in keys] + [f"{k} px" for k in keys]
    cols += ["AEPE", "smooth", "smooth gt"]
    rows = []
    for name, b in [*summary["subsets"].items(), ("overall", summary["overall"])]:
        cells = [str(b["n_pairs"])]
        cells += [_num(b["pck_per_image"][k], 100, 1) for k in keys]
        cells += [_num(b["pck_per_pixel"][k], 100, 1) for k in keys]
        cells += [_num(b["aepe"]), _num(b["smoothness_est"]), _num(b["smoothness_gt"])]
        rows.append((name, cells))
    lead = max(len("subset"), *(len(n) for n, _ in rows))
    widths = [max(len(c), *(len(r[i]) for _, r in rows)) for i, c in enumerate(cols)]

    def line(first: str, cells: list[str]) -> str:
        parts = [first.ljust(lead)] + [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(parts)

    head = [
        "TSS dense flow: PCK@alpha in % (EPE <= alpha * T_ref, T_ref = max(H, W) of the source "
        "image, pixels of the target's foreground mask);",
        "img = per image (mean over pairs), px = per pixel; AEPE in pixels; smooth = mean "
        "first-order difference of the flow in the mask (lower is smoother), gt: of the truth.",
    ]
    title = line("subset", cols)
    body = [line(n, c) for n, c in rows]
    return (
        "\n".join([*head, title, "-" * len(title), *body[:-1], "-" * len(title), body[-1]]) + "\n"
    )


def write_flow_csv(summary: dict, path: str | os.PathLike) -> None:
    """One row per subset and a last ``overall`` row (fractions, pixels); written atomically."""
    from corr.io import atomic_write_text

    keys = summary["alphas"]
    cols = ["subset", "n_pairs", "n_pairs_without_pixels", "n_pixels"]
    cols += [f"pck@{k}_per_image" for k in keys] + [f"pck@{k}_per_pixel" for k in keys]
    cols += ["aepe", "smoothness_est", "smoothness_gt"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for name, b in [*summary["subsets"].items(), ("overall", summary["overall"])]:
        vals = [name, b["n_pairs"], b["n_pairs_without_pixels"], b["n_pixels"]]
        vals += [b["pck_per_image"][k] for k in keys] + [b["pck_per_pixel"][k] for k in keys]
        vals += [b["aepe"], b["smoothness_est"], b["smoothness_gt"]]
        w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in vals])
    atomic_write_text(path, buf.getvalue())
