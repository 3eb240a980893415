"""The one-call methods of :class:`corr.Matcher`: ``match``, ``dense``, ``warp`` and
``match_sparse``, each a line through a fresh :class:`~corr.pair.Pair` (so their results are
the pair's). Kept apart from the matcher's settings, features and descriptors
(:mod:`corr.matcher`); :class:`~corr.Matcher` inherits them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .io import ImageLike
from .outputs import DenseOutput, MatchOutput, WarpOutput

if TYPE_CHECKING:  # pragma: no cover
    from .pair import Pair


class PairShortcuts:
    """``Matcher.match`` / ``dense`` / ``warp`` / ``match_sparse``: ``self.pair(src, tgt,
    category)`` and one question to it (for a class with a ``pair()`` method returning a
    :class:`~corr.pair.Pair`)."""

    pair: Callable[..., Pair]

    def match(
        self,
        src: ImageLike,
        tgt: ImageLike,
        points: np.ndarray | Sequence[Sequence[float]] | None = None,
        *,
        category: str | tuple[str | None, str | None] | None = None,
        flip: bool = False,
        flip_pairs: Sequence[Sequence[int]] | np.ndarray | None = None,
        src_mask: np.ndarray | None = None,
        tgt_mask: np.ndarray | None = None,
        tgt_visible: np.ndarray | None = None,
        return_tensors: str = "np",
    ) -> MatchOutput:
        """Transfer ``points`` (``(N, 2)`` source pixels ``(x, y)``; NaN rows = invisible; a
        list, array or tensor) from ``src`` to ``tgt``; ``None``: every source cell on image
        content. ``category`` fills a ``{category}`` SD prompt (``(src, tgt)`` categories when
        they differ); ``flip=True`` with ``flip_pairs`` (and optional masks, ``tgt_visible``)
        adds flip alignment (docs/protocol.md §6). Returns a :class:`~corr.outputs.MatchOutput`
        (``keypoints0``, ``keypoints1``, ``confidence`` and, with ``flip``, a ``flip`` dict).
        Same as ``self.pair(src, tgt, category).match(points, ...)``: see
        :meth:`Pair.match <corr.pair.Pair.match>` for every argument and field."""
        return self.pair(src, tgt, category).match(
            points,
            flip=flip,
            flip_pairs=flip_pairs,
            src_mask=src_mask,
            tgt_mask=tgt_mask,
            tgt_visible=tgt_visible,
            return_tensors=return_tensors,
        )

    def dense(
        self,
        src: ImageLike,
        tgt: ImageLike,
        category: str | None = None,
        *,
        upsample: bool = False,
        return_tensors: str = "np",
    ) -> DenseOutput:
        """Match every source grid cell (``upsample=True``: every source pixel); returns a
        :class:`~corr.outputs.DenseOutput` (``points0``, ``coords1``, ``flow``, ``confidence``,
        ``valid``) in original pixels. Same as ``self.pair(src, tgt, category).dense(...)``: see
        :meth:`Pair.dense <corr.pair.Pair.dense>`."""
        return self.pair(src, tgt, category).dense(upsample=upsample, return_tensors=return_tensors)

    def warp(
        self,
        src: ImageLike,
        tgt: ImageLike,
        category: str | None = None,
        *,
        min_confidence: float | None = None,
        return_tensors: str = "np",
    ) -> WarpOutput:
        """The source image warped into the target's frame through the dense correspondence
        (``pip install "semcorr[warp]"``); returns a :class:`~corr.outputs.WarpOutput` of the
        target's size. Same as ``self.pair(src, tgt, category).warp(...)``: see
        :meth:`Pair.warp <corr.pair.Pair.warp>`."""
        return self.pair(src, tgt, category).warp(
            min_confidence=min_confidence, return_tensors=return_tensors
        )

    def match_sparse(
        self,
        src: ImageLike,
        tgt: ImageLike,
        *,
        mutual: bool = True,
        max_matches: int | None = None,
        min_confidence: float | None = None,
        category: str | tuple[str | None, str | None] | None = None,
        return_tensors: str = "np",
    ) -> MatchOutput:
        """Mutual nearest-neighbour matches between the cells on image content of both images,
        most similar first, for geometry estimation; returns a
        :class:`~corr.outputs.MatchOutput`. Same as ``self.pair(src, tgt,
        category).match_sparse(...)``: see :meth:`Pair.match_sparse
        <corr.pair.Pair.match_sparse>`."""
        return self.pair(src, tgt, category).match_sparse(
            mutual=mutual,
            max_matches=max_matches,
            min_confidence=min_confidence,
            return_tensors=return_tensors,
        )
