""":func:`swap`: the source's instance put in place of the target's (SD+DINO's instance
swapping).

The recipe of the SD+DINO paper (Zhang et al., NeurIPS 2023, §5 "instance swapping"; the
reference's initial swap is ``demo_swap.ipynb`` of github.com/Junyi42/sd-dino at b85df18,
which replaces every target-instance pixel by its nearest neighbour among the source
instance's features):

1. a dense correspondence map from the fused features: every target pixel matched to the
   source instance (:meth:`Pair.warp <corr.pair.Pair.warp>` with ``src_mask``: matches may
   land only on source cells mostly inside the source mask);
2. the initial swap: the target's instance pixels replaced by the source pixels they match
   (bilinear), the rest of the target unchanged;
3. optionally the diffusion refinement (:mod:`corr.swap.refine`): DDIM inversion of the
   initial swap and DDIM sampling, prompted "A high quality image of {category}", that
   re-injects the spatial features recorded along the inversion.

Stated failure cases (the paper's): an instance too small for the feature grid (refused with
a clear error) and DDIM-inversion artifacts in the refinement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import ImageLike, load_image
from ..outputs import SwapOutput
from .masks import check_mask, cosegmentation_foreground

if TYPE_CHECKING:  # pragma: no cover
    from ..matcher import Matcher
    from .refine import Refiner

#: the refinement's prompt (the paper's)
PROMPT = "A high quality image of {category}"


def swap(
    src: ImageLike,
    tgt: ImageLike,
    category: str | None = None,
    *,
    mask_src: Any = None,
    mask_tgt: Any = None,
    refine: bool = True,
    steps: int = 50,
    matcher: Matcher | None = None,
    refiner: Refiner | None = None,
    sd_model: str = "sd15",
    sd_path: str | None = None,
    seed: int = 0,
    n_parts: int = 2,
    min_confidence: float | None = None,
    progress: bool = True,
    **matcher_options: Any,
) -> SwapOutput:
    """Put ``src``'s instance in place of ``tgt``'s, with the target's pose and background.

    Args:
        src, tgt: paths, PIL images, ``(H, W, 3)`` arrays or ``(3, H, W)`` tensors.
        category: the instances' category (e.g. ``"cat"``): the refinement's prompt and the
            matcher's ``{category}`` SD prompt. Required with ``refine=True``.
        mask_src, mask_tgt: the instances, each an ``(H, W)`` mask of its own image (array,
            tensor or PIL image; nonzero = instance) or a box ``(x0, y0, x1, y1)`` in its
            original pixels (:func:`corr.swap.masks.check_mask`). A missing one comes from
            co-segmentation of the pair (:func:`corr.swap.masks.cosegmentation_foreground`,
            ``n_parts`` parts, ``seed``; needs scikit-learn).
        refine: run the diffusion refinement (needs the SD weights; a missing one raises
            :class:`~corr.WeightsNotFoundError`, never random weights); ``False``: the
            initial swap only, on any backbone.
        steps: DDIM steps of the inversion and of the sampling.
        matcher: the :class:`~corr.Matcher` whose features make the correspondence (default
            ``Matcher(**matcher_options)``, the SD+DINO features).
        refiner: a :class:`~corr.swap.refine.Refiner` (default: one on ``sd_model``'s
            weights, ``sd_path`` if given, on the matcher's device).
        seed: seeds the co-segmentation and the refinement.
        min_confidence: target pixels whose match is less similar (cosine) keep the target.
        progress: a tqdm bar over the refinement's steps.

    Returns a :class:`~corr.outputs.SwapOutput` whose images have the target's size.
    """
    if refine and not category:
        raise ValueError(
            f"refine=True needs category= for the prompt {PROMPT!r} (or pass refine=False)"
        )
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive number of DDIM steps, got {steps}")
    if matcher is None:
        from ..matcher import Matcher

        matcher = Matcher(**matcher_options)
    elif matcher_options:
        raise TypeError(
            "give either a matcher or Matcher options, not both; got options "
            + ", ".join(sorted(matcher_options))
        )
    if refine and refiner is None:  # missing weights are refused before any work is done
        from .refine import Refiner

        refiner = Refiner.from_weights(sd_model, path=sd_path, device=matcher.device)
    src_px = load_image(src, name="src", exif_transpose=matcher.exif_transpose)
    tgt_px = load_image(tgt, name="tgt", exif_transpose=matcher.exif_transpose)
    (h_s, w_s), (h_t, w_t) = src_px.shape[:2], tgt_px.shape[:2]
    masks = [
        None if mask_src is None else check_mask(mask_src, w_s, h_s, "mask_src"),
        None if mask_tgt is None else check_mask(mask_tgt, w_t, h_t, "mask_tgt"),
    ]
    masks_from = "given"
    if masks[0] is None or masks[1] is None:
        found = cosegmentation_foreground(matcher, src_px, tgt_px, category, n_parts, seed)
        masks = [found[i] if m is None else m for i, m in enumerate(masks)]
        masks_from = "cosegmentation"
    m_src, m_tgt = masks
    pair = matcher.pair(src_px, tgt_px, category)
    try:
        warp = pair.warp(src_mask=m_src, min_confidence=min_confidence)
    except ValueError as err:
        if str(err).startswith("the mask"):  # dense.target_cells' refusals of the mask itself
            raise ValueError(f"mask_src: {err}") from None
        raise
    replaced = m_tgt & np.asarray(warp.valid, dtype=bool)
    initial = tgt_px.copy()
    initial[replaced] = np.asarray(warp.warped)[replaced]
    config: dict[str, Any] = {
        "category": category,
        "masks_from": masks_from,
        "min_confidence": min_confidence,
        "seed": int(seed),
        "refine": bool(refine),
        "matcher": matcher.config(),
    }
    if masks_from == "cosegmentation":
        config["n_parts"] = int(n_parts)
    refined = None
    if refiner is not None and refine:
        prompt = PROMPT.replace("{category}", str(category))
        refined = refiner.refine(
            initial, replaced, prompt=prompt, steps=steps, seed=seed, progress=progress
        )
        config.update(steps=int(steps), prompt=prompt, refiner=refiner.config())
    return SwapOutput(
        initial=initial,
        refined=refined,
        mask=replaced,
        mask_src=m_src,
        mask_tgt=m_tgt,
        coords=np.asarray(warp.coords),
        confidence=np.asarray(warp.confidence),
        masks_from=masks_from,
        config=config,
    )
