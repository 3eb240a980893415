"""The one-call API: :func:`match` builds a :class:`~corr.Matcher` for its options (and keeps
it for the next call with the same options); :func:`clear_cache` lets it go."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .io import ImageLike
from .matcher import Matcher
from .outputs import MatchOutput
from .weights import WeightsNotFoundError

logger = logging.getLogger(__name__)

_MATCHERS: dict[str, Matcher] = {}
_CALL_OPTIONS = (
    "category",
    "flip",
    "flip_pairs",
    "src_mask",
    "tgt_mask",
    "tgt_visible",
    "return_tensors",
)


def match(
    src: ImageLike,
    tgt: ImageLike,
    points: np.ndarray | Sequence[Sequence[float]] | None = None,
    **options: Any,
) -> MatchOutput:
    """Transfer ``points`` from ``src`` to ``tgt`` in one call.

    ``src``/``tgt``: paths, PIL images, ``(H, W, 3)`` arrays or ``(3, H, W)`` tensors;
    ``points``: ``(N, 2)`` source pixels ``(x, y)`` (``None``: every source grid cell). Options
    are those of :class:`Matcher` (``extractors``, ``fuse``, ``method``, ...) and of
    :meth:`Matcher.match` (``flip``, ``flip_pairs``, ``category``, masks). The matcher built for
    a given set of options is kept in this module, so repeated calls don't reload the models;
    it holds its models (and their GPU memory) until :func:`clear_cache` or the end of the
    process. Returns a :class:`~corr.outputs.MatchOutput`: ``keypoints0``, ``keypoints1``
    ``(N, 2)`` in original pixels and ``confidence`` ``(N,)``. Missing weights raise one
    :class:`~corr.weights.WeightsNotFoundError` naming all of them, before any model is loaded.
    """
    call = {k: options.pop(k) for k in list(options) if k in _CALL_OPTIONS}
    key = repr(sorted(options.items(), key=lambda kv: kv[0]))
    matcher = _MATCHERS.get(key)
    if matcher is None:
        _MATCHERS.clear()  # keep one set of models in memory
        try:
            matcher = Matcher(**options)
        except WeightsNotFoundError as err:  # every missing weight, named before any was loaded
            raise err.with_traceback(None) from None  # raised here: no frames of internals
        _MATCHERS[key] = matcher
    return matcher.match(src, tgt, points, **call)


def clear_cache() -> None:
    """Drop the matcher :func:`match` keeps between calls, and free the memory it held
    (the CUDA caching allocator's too)."""
    had = bool(_MATCHERS)
    _MATCHERS.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if had:
        logger.info("corr.match: cached matcher released")
