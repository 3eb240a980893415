"""The page's "Swap" tab: the loaded pair's instance swap (:func:`corr.swap.swap`).

The source's instance is put in place of the target's, the masks found by co-segmentation of
the pair (:func:`corr.swap.masks.cosegmentation_foreground`). The initial swap runs on the
page's backbone (the MobileNetV2 stand-in too); the diffusion refinement needs the SD 1.5
weights with their text encoder, and is off, with a note saying so and how to get them, when
they are missing (never random weights).
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from ..devices import resolve_device
from ..swap.api import swap
from ..swap.refine import Refiner
from ..weights import WeightsNotFoundError, resolve
from .demo import DemoApp, PageState
from .render import display_scale, resized

#: the SD weights of the refinement
SD_MODEL = "sd15"


def refinement_problem() -> str | None:
    """Why the refinement cannot run here (weights, text encoder or a package missing), or
    ``None``."""
    try:
        resolve(SD_MODEL, allow_download=False, kind="diffusers")
    except WeightsNotFoundError:
        return (
            f"the SD 1.5 weights are missing: get them with `python -m corr.weights download "
            f"{SD_MODEL}` (needs network; includes the text encoder) or put a diffusers folder "
            "in weights/ (see `python -m corr.weights list`)"
        )
    if importlib.util.find_spec("transformers") is None:
        return 'the refinement\'s prompt needs the CLIP text encoder: pip install "semcorr[text]"'
    return None


class SwapTab:
    """The Swap tab's logic for one :class:`~corr.app.demo.DemoApp` (its backbones, its
    loaded pair); the SD refiner is built on first use and kept."""

    def __init__(self, app: DemoApp) -> None:
        self.app = app
        self.problem = refinement_problem()
        self.refiner: Refiner | None = None

    def note(self) -> str:
        """What the tab says before anything runs."""
        text = (
            "Put the **source's** instance in place of the **target's** (the target's pose and "
            "background), as in the SD+DINO paper: an initial swap through the dense "
            "correspondence of the backbone's features, the instances found by "
            "co-segmentation, then a diffusion refinement with Stable Diffusion 1.5."
        )
        if self.problem is not None:
            text += f"\n\n**Refinement off:** {self.problem}. The tab shows the initial swap only."
        return text

    def run(
        self, state: PageState, backbone: str, category: str, refine: bool, steps: int = 50
    ) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        """The loaded pair's swap: ``(initial, refined or None)`` at most ``max_display``
        pixels on the longer side, and a status line."""
        if state.src is None or state.tgt is None:
            raise ValueError("no image pair yet: upload a source and a target image first")
        category = category.strip()
        if refine and self.problem is not None:
            raise WeightsNotFoundError(f"refinement off: {self.problem}")
        if refine and not category:
            raise ValueError("the refinement's prompt needs the category (e.g. cat)")
        start = time.perf_counter()
        if refine and self.refiner is None:
            self.refiner = Refiner.from_weights(SD_MODEL, device=resolve_device(self.app.device))
        out = swap(
            state.src,
            state.tgt,
            category or None,
            refine=refine,
            steps=steps,
            matcher=self.app.matcher(backbone),
            refiner=self.refiner if refine else None,
            progress=False,
        )
        h, w = out.initial.shape[:2]
        scale = display_scale(w, h, self.app.max_display)
        refined = None if out.refined is None else resized(out.refined, scale)
        share = 100 * out.mask.sum() / max(1, out.mask_tgt.sum())
        what = "initial and refined swap" if refined is not None else "initial swap"
        return (
            resized(out.initial, scale),
            refined,
            f"{what} with {self.app.backbones[backbone][0]} in "
            f"{time.perf_counter() - start:.1f} s: {share:.0f}% of the target instance's "
            f"pixels replaced (masks from {out.masks_from}).",
        )
