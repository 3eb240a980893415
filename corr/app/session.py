"""The interactive demo's state for one image pair, without any web framework.

:class:`PairSession` computes the two images' features and fused descriptors once; every click
is then a lookup: the matched point (the same computation as :meth:`corr.Matcher.match`) and
the similarity heat map over the target. :meth:`PairSession.try_flip` makes the flip-alignment
decision of docs/protocol.md §6 for the pair; ``click(..., mirrored=True)`` then matches from
the mirrored source as ``Matcher.match(..., flip=True, flip_pairs=[])`` does when the mirrored
source wins (a clicked point has no labelled left/right twin, so it is its own twin). All
points are ``(x, y)`` in original image pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..alignment import mirrored_source_wins
from ..geometry import content_mask, grid_cells
from ..io import ImageLike, load_image
from ..pipeline import ImageFeatures, Matcher
from ..viz import cosine_similarity_map, grid_to_image


@dataclass
class ClickResult:
    """One clicked source point and its match.

    ``source``/``target``: ``(x, y)`` in original source/target pixels; ``confidence``: cosine
    similarity of the matched cell, in ``[-1, 1]``; ``heatmap``: ``(H_t, W_t)`` cosine similarity
    of the clicked cell with every target position (NaN on the target's letterbox padding);
    ``mirrored``: matched from the mirrored source; ``seconds``: time of this click.
    """

    source: tuple[float, float]
    target: tuple[float, float]
    confidence: float
    heatmap: np.ndarray
    mirrored: bool
    seconds: float


@dataclass
class FlipDecision:
    """The pair's flip-alignment decision: instance distances of the plain and the mirrored
    source to the target (lower is better; docs/protocol.md §6)."""

    flipped: bool
    distance: float
    distance_flipped: float

    def describe(self) -> str:
        """One sentence for a user."""
        if self.flipped:
            return (
                f"the mirrored source wins (distance {self.distance_flipped:.4f} vs "
                f"{self.distance:.4f} plain): clicks are matched from the mirrored source"
            )
        return (
            f"the source as it is wins (distance {self.distance:.4f} vs "
            f"{self.distance_flipped:.4f} mirrored): clicks are matched without flipping"
        )


class PairSession:
    """Features and descriptors of one pair, computed once; clicks are answered from them.

    Args:
        matcher: the :class:`~corr.Matcher` (its extractors and matching method are used as
            they are).
        src, tgt: the two images (paths, arrays, PIL images).
        category: fills a ``{category}`` SD prompt, as in :meth:`~corr.Matcher.match`.
        weights: fusion weights per extractor (default: the matcher's), e.g. ``(alpha,
            1 - alpha)``; the session keeps them, whatever the matcher is set to later.
    """

    def __init__(
        self,
        matcher: Matcher,
        src: ImageLike,
        tgt: ImageLike,
        category: str | None = None,
        weights: list[float] | None = None,
    ) -> None:
        start = time.perf_counter()
        self.matcher = matcher
        self.category = category
        self.weights = list(matcher.weights if weights is None else weights)
        if len(self.weights) != len(matcher.extractors):
            raise ValueError(
                f"weights has {len(self.weights)} entries for {len(matcher.extractors)} extractors"
            )
        self.src = load_image(src, name="src", exif_transpose=matcher.exif_transpose)
        self.tgt = load_image(tgt, name="tgt", exif_transpose=matcher.exif_transpose)
        with torch.no_grad():
            self.fs = matcher.features(self.src, category, "src")
            self.ft = matcher.features(self.tgt, category, "tgt")
            self.ds, self.dt = self._descriptors(self.fs, self.ft)
        self._mirrored: tuple[ImageFeatures, torch.Tensor, torch.Tensor] | None = None
        self._decision: FlipDecision | None = None
        grid = self.dt.shape[-1]
        self._tgt_content = content_mask(matcher._frame(self.ft), grid)
        self.seconds = time.perf_counter() - start

    def _descriptors(self, a: ImageFeatures, b: ImageFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        saved, self.matcher.weights = self.matcher.weights, self.weights
        try:
            return self.matcher.descriptors(a, b)
        finally:
            self.matcher.weights = saved

    def _mirror(self) -> tuple[ImageFeatures, torch.Tensor, torch.Tensor]:
        if self._mirrored is None:
            with torch.no_grad():
                fm = self.matcher.features(self.src, self.category, "src", mirrored=True)
                dm, dt_m = self._descriptors(fm, self.ft)
            self._mirrored = (fm, dm, dt_m)
        return self._mirrored

    def try_flip(self) -> FlipDecision:
        """Decide between the plain and the mirrored source (maskless, as ``Matcher.match(...,
        flip=True)``); computed once per pair."""
        if self._decision is not None:
            return self._decision
        fm, dm, dt_m = self._mirror()
        d_plain, d_flip = self.matcher._flip_distances(
            self.ds, self.dt, dm, dt_m, self.fs, self.ft, None, None
        )
        flipped = mirrored_source_wins(d_plain, d_flip)
        self._decision = FlipDecision(flipped, float(d_plain), float(d_flip))
        return self._decision

    def click(self, x: float, y: float, mirrored: bool = False) -> ClickResult:
        """Match source pixel ``(x, y)`` (from the mirrored source with ``mirrored=True``: the
        clicked point's mirrored position, matched with the mirrored source's descriptors);
        raises ``ValueError`` outside the source image."""
        start = time.perf_counter()
        m = self.matcher
        pts = m._check_points([[float(x), float(y)]], self.fs)
        with torch.no_grad():
            if mirrored:  # as Matcher.match(flip=True) with the point as its own twin
                fs, d_src, d_tgt = self._mirror()
                query = m._mirrored_queries(pts, self.fs)
            else:
                fs, d_src, d_tgt = self.fs, self.ds, self.dt
                query = m._frame(fs).to_letterbox(pts, arithmetic=m.arithmetic)
            target, conf = m._transfer_letterbox(d_src, d_tgt, fs, self.ft, query)
            cell = grid_cells(query, m.frame, d_src.shape[-1], arithmetic=m.arithmetic)[0]
            sim = cosine_similarity_map(d_src, d_tgt, cell)
        sim = np.where(self._tgt_content, sim, np.nan)
        heat = grid_to_image(sim, m._frame(self.ft))
        return ClickResult(
            source=(float(pts[0, 0]), float(pts[0, 1])),
            target=(float(target[0, 0]), float(target[0, 1])),
            confidence=float(np.clip(conf[0], -1.0, 1.0)),
            heatmap=heat,
            mirrored=mirrored,
            seconds=time.perf_counter() - start,
        )
