"""A figure of one swap: the source with its instance outlined, the target likewise, the
initial swap and (when made) the refined one, side by side, with a caption saying which
features and which steps made it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..outputs import SwapOutput


def plot_swap(
    src: np.ndarray,
    tgt: np.ndarray,
    out: SwapOutput,
    *,
    caption: str,
    titles: Sequence[str] = ("source", "target"),
    panel_height: float = 2.6,
) -> Figure:
    """``src`` ``(H_s, W_s, 3)`` and ``tgt`` ``(H_t, W_t, 3)`` uint8 with the instance masks of
    ``out`` outlined (white contour), then ``out.initial`` and ``out.refined`` (if any);
    ``caption`` under the panels (say what made it). An
    off-screen matplotlib figure (:func:`corr.viz.save_figure` writes it)."""
    from ..viz import new_figure

    panels: list[tuple[np.ndarray, np.ndarray | None, str]] = [
        (src, out.mask_src, f"{titles[0]} (its instance outlined)"),
        (tgt, out.mask_tgt, f"{titles[1]} (its instance outlined)"),
        (out.initial, None, "initial swap"),
    ]
    if out.refined is not None:
        panels.append((out.refined, None, "refined (DDIM inversion + injection)"))
    widths = [im.shape[1] / im.shape[0] * panel_height for im, _, _ in panels]
    fig = new_figure(sum(widths) + 0.2, panel_height + 0.6)
    grid = fig.add_gridspec(1, len(panels), width_ratios=widths)
    for i, (image, mask, title) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(image)
        if mask is not None:
            ax.contour(mask.astype(np.float32), levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
