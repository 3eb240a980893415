"""One image pair, and every question about it answered from features computed once.

:meth:`corr.Matcher.pair` returns a :class:`Pair`. It computes the two images' features and
fused descriptors on first need and keeps them, so asking it many things (a page's clicks, the
flip decision, a dense field and a warp) costs one extraction per image and one fusion per
pair. The matcher's one-call methods (``Matcher.match``, ``dense``, ``warp``,
``match_sparse``) are one-line calls through a fresh pair, so the results are the same.

Every point is ``(x, y)`` in *original image pixels* (docs/protocol.md §1); descriptors are
``(D, g, g)`` on the grid that covers each image's matching frame (letterbox, side
:attr:`Matcher.frame <corr.Matcher.frame>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .alignment import (
    flip_distances,
    flip_permutation_from_pairs,
    mirror_in_letterbox,
    mirrored_source_wins,
    replace_where_aligned,
)
from .dense import dense_field, shared_points, sparse_matches, warp_source
from .fusion import l2_normalize
from .geometry import (
    clip_to_image,
    content_mask,
    grid_cells,
    grid_to_image,
    grid_to_letterbox,
    mirror_points,
)
from .io import ImageLike
from .matching import cosine_similarity_map, match_points, pixel_match
from .outputs import DenseOutput, MatchOutput, WarpOutput, to_torch

if TYPE_CHECKING:  # pragma: no cover
    from .features import ImageFeatures
    from .geometry import Letterbox, Stretch
    from .matcher import Matcher

Category = str | tuple[str | None, str | None] | None


@dataclass(frozen=True)
class FlipDecision:
    """The flip-alignment decision of a pair (docs/protocol.md §6): instance distances of the
    source as it is and of its mirror image to the target (lower is closer); ``masked``: made
    on foreground masks."""

    flipped: bool
    distance: float
    distance_flipped: float
    masked: bool = False

    def describe(self) -> str:
        """One sentence for a user."""
        if self.flipped:
            return (
                f"the mirrored source wins (distance {self.distance_flipped:.4f} vs "
                f"{self.distance:.4f} plain): points are matched from the mirrored source"
            )
        return (
            f"the source as it is wins (distance {self.distance:.4f} vs "
            f"{self.distance_flipped:.4f} mirrored): points are matched without flipping"
        )


def _check_return_tensors(value: str) -> None:
    if value not in ("np", "pt"):
        raise ValueError(f"return_tensors must be one of 'np', 'pt', got {value!r}")


def check_points(points: Any, width: int, height: int) -> np.ndarray:
    """``points`` (list, array or tensor) -> a float64 ``(N, 2)`` array of ``(x, y)`` pixels of a
    ``width x height`` image; NaN rows (invisible points) pass, points outside are refused."""
    if isinstance(points, torch.Tensor):
        points = points.detach().to("cpu", torch.float64).numpy()
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(
            f"points must be an (N, 2) array of (x, y) source pixels, got shape {pts.shape}"
        )
    ok = ~np.isnan(pts).any(axis=1)
    # the image spans [0, W] x [0, H] in continuous coordinates (annotations may sit on W)
    bad = ok & ((pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"points[{i}] = {pts[i].tolist()} lies outside the source image "
            f"({width}x{height}); points are (x, y) in original source pixels"
        )
    return pts


class Pair:
    """A source and a target image under one :class:`~corr.Matcher`; build it with
    :meth:`Matcher.pair <corr.Matcher.pair>`.

    Features (from the matcher's cache when it has them) and the fused descriptors are
    computed on first need and kept; so are the mirrored source's (for flip alignment) and the
    maskless flip decision. The pair holds them until it is dropped.

    Args:
        matcher: the matcher whose extractors, fusion and matching settings are used.
        src, tgt: paths, PIL images, ``(H, W, 3)`` arrays or ``(3, H, W)`` tensors.
        category: fills a ``{category}`` SD prompt; ``(src_category, tgt_category)`` when the
            two images differ.
        weights: fusion weights per extractor for this pair (default: the matcher's).
    """

    def __init__(
        self,
        matcher: Matcher,
        src: ImageLike,
        tgt: ImageLike,
        category: Category = None,
        weights: Sequence[float] | None = None,
        *,
        mirrored_source: bool = False,
    ) -> None:
        self.matcher = matcher
        self.src, self.tgt = src, tgt
        cat_s, cat_t = category if isinstance(category, (tuple, list)) else (category, category)
        self.category: tuple[str | None, str | None] = (cat_s, cat_t)
        self.weights = [float(w) for w in (matcher.weights if weights is None else weights)]
        if len(self.weights) != len(matcher.extractors):
            raise ValueError(
                f"weights has {len(self.weights)} entries for {len(matcher.extractors)} extractors"
            )
        self.mirrored_source = mirrored_source
        self._src_features: ImageFeatures | None = None
        self._tgt_features: ImageFeatures | None = None
        self._descriptors: tuple[torch.Tensor, torch.Tensor] | None = None
        self._units: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mirrored: Pair | None = None
        self._decision: FlipDecision | None = None

    def __repr__(self) -> str:
        done = "computed" if self._descriptors is not None else "not computed yet"
        return f"Pair(src={_name(self.src)}, tgt={_name(self.tgt)}, descriptors {done})"

    # ------------------------------------------------------------------ what the pair holds
    @property
    def features(self) -> tuple[ImageFeatures, ImageFeatures]:
        """The source's and the target's :class:`~corr.features.ImageFeatures`."""
        if self._src_features is None:
            self._src_features = self.matcher.features(
                self.src, self.category[0], "src", mirrored=self.mirrored_source
            )
        if self._tgt_features is None:
            self._tgt_features = self.matcher.features(self.tgt, self.category[1], "tgt")
        return self._src_features, self._tgt_features

    @property
    def descriptors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused ``(D, g, g)`` descriptors of the source and the target (co-PCA fitted on this
        pair, source first)."""
        if self._descriptors is None:
            fs, ft = self.features
            with torch.no_grad():
                ds, dt = self.matcher.descriptors_many([fs, ft], weights=self.weights)
            self._descriptors = (ds, dt)
        return self._descriptors

    @property
    def unit_descriptors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:attr:`descriptors` normalised per cell (``l2_normalize``), as matching uses them;
        per image from the matcher's :attr:`~corr.Matcher.reuse` where no co-PCA ties them to
        the pair (:meth:`corr.Matcher.unit_descriptors`)."""
        if self._units is None:
            with torch.no_grad():
                units = self.matcher.unit_descriptors(list(self.features), self.weights)
                if units is None:
                    units = [l2_normalize(d) for d in self.descriptors]
            self._units = (units[0], units[1])
        return self._units

    def prepare(self) -> Pair:
        """Compute the features and fused descriptors now (otherwise on first need), e.g.
        before the first click of a page; returns the pair."""
        self.descriptors  # noqa: B018 (the property computes and keeps them)
        return self

    @property
    def frames(self) -> tuple[Letterbox | Stretch, Letterbox | Stretch]:
        """The matching frames of the source and the target (original pixels <-> frame)."""
        fs, ft = self.features
        m = self.matcher
        return m.matching_frame(fs.width, fs.height), m.matching_frame(ft.width, ft.height)

    def mirrored(self) -> Pair:
        """The pair of the source's horizontal mirror image and the same target (its features
        re-extracted on the mirror image; the target's shared), made once."""
        if self.mirrored_source:
            raise ValueError("this pair's source is already the mirrored one")
        if self._mirrored is None:
            pair = Pair(self.matcher, self.src, self.tgt, self.category, self.weights)
            pair.mirrored_source = True
            pair._tgt_features = self.features[1]
            self._mirrored = pair
        return self._mirrored

    def reversed(self) -> Pair:
        """The pair the other way round (target -> source), sharing the computed features."""
        if self.mirrored_source:
            raise ValueError("a pair with a mirrored source cannot be reversed")
        pair = Pair(self.matcher, self.tgt, self.src, self.category[::-1], self.weights)
        pair._src_features, pair._tgt_features = self._tgt_features, self._src_features
        return pair

    # ------------------------------------------------------------------ questions
    def match(
        self,
        points: np.ndarray | Sequence[Sequence[float]] | torch.Tensor | None = None,
        *,
        flip: bool = False,
        flip_pairs: Sequence[Sequence[int]] | np.ndarray | None = None,
        src_mask: np.ndarray | None = None,
        tgt_mask: np.ndarray | None = None,
        tgt_visible: np.ndarray | None = None,
        return_tensors: str = "np",
    ) -> MatchOutput:
        """Transfer ``points`` (``(N, 2)`` source pixels ``(x, y)``; NaN rows = invisible) to
        the target.

        ``points`` may be a list, a numpy array or a torch tensor (on any device); without
        them, every source grid cell on the image content is matched. ``return_tensors="pt"``
        gives torch tensors on the matcher's device instead of numpy arrays. With
        ``flip=True`` the mirrored source is tried too (docs/protocol.md §6): ``flip_pairs``
        gives the left/right twins among the points (pairs ``(i, j)``, or a ``(N,)``
        permutation; ``[]`` when none has a twin); ``src_mask``/``tgt_mask`` (``(H, W)``
        foreground masks) switch the decision to the masked distance. When the mirrored source
        wins, point ``i`` takes the match of its twin's mirrored position only where ``i`` and
        its twin are visible (not NaN) in the source and, if ``tgt_visible`` (``(N,)`` bool) is
        given, in the target too; elsewhere it keeps its plain match. Returns a
        :class:`~corr.outputs.MatchOutput`: ``keypoints0``, ``keypoints1`` (original target
        pixels), ``confidence`` (cosine similarity of the matched cell, in ``[-1, 1]``) and,
        with ``flip``, a ``flip`` dict (``flipped``, ``distance``, ``distance_flipped``,
        ``replaced`` (K,) bool, ``masked``, ``keypoints1_plain``: the unaligned predictions).
        """
        _check_return_tensors(return_tensors)
        if points is None and flip:
            raise ValueError(
                "flip alignment needs labelled points: pass points and flip_pairs "
                "(the mirrored query of point i is its left/right twin's mirrored position)"
            )
        fs, _ = self.features
        if points is None:
            pts = self._grid_points()
        else:
            pts = check_points(points, fs.width, fs.height)
        visible = ~np.isnan(pts).any(axis=1)
        pred = np.full_like(pts, np.nan)
        conf = np.full(len(pts), np.nan)
        if visible.any():
            queries = self.frames[0].to_letterbox(pts[visible], arithmetic=self.matcher.arithmetic)
            pred[visible], conf[visible] = self._transfer(queries)
        result: dict[str, Any] = {"keypoints0": pts, "keypoints1": pred, "confidence": conf}
        if flip:
            result = self._align(result, flip_pairs, src_mask, tgt_mask, tgt_visible)
        # a cosine similarity: float32 rounding may put a perfect match at 1 + 1e-7
        result["confidence"] = np.clip(result["confidence"], -1.0, 1.0)
        out = MatchOutput(**result)
        return to_torch(out, self.matcher.device) if return_tensors == "pt" else out

    def flip_decision(
        self, src_mask: np.ndarray | None = None, tgt_mask: np.ndarray | None = None
    ) -> FlipDecision:
        """Whether the mirrored source matches the target better (docs/protocol.md §6), by the
        matcher's ``flip_distance`` rule; with ``src_mask`` and ``tgt_mask`` (``(H, W)``
        foreground masks of each image) on the foreground. The maskless one is kept."""
        if src_mask is None and tgt_mask is None and self._decision is not None:
            return self._decision
        if self.mirrored_source:
            raise ValueError("this pair's source is already the mirrored one")
        mirrored = self.mirrored()
        with torch.no_grad():
            d_plain, d_flip = flip_distances(
                self.descriptors,
                mirrored.descriptors,
                *self.frames,
                rule=self.matcher.flip_distance,
                src_mask=src_mask,
                tgt_mask=tgt_mask,
            )
        decision = FlipDecision(
            mirrored_source_wins(d_plain, d_flip), d_plain, d_flip, masked=src_mask is not None
        )
        if src_mask is None:
            self._decision = decision
        return decision

    def similarity(self, point: Sequence[float], mirrored: bool = False) -> np.ndarray:
        """Cosine similarity of source point ``(x, y)``'s cell with every target position: an
        ``(H_t, W_t)`` heat map in original target pixels (bilinear between cells; NaN on the
        target's letterbox padding). ``mirrored=True``: the point's mirrored position in the
        mirrored source (as its match under flip alignment)."""
        fs, _ = self.features
        pts = check_points([[float(point[0]), float(point[1])]], fs.width, fs.height)
        pair, query = (self.mirrored(), self._mirrored_queries(pts)) if mirrored else (self, None)
        if query is None:
            query = self.frames[0].to_letterbox(pts, arithmetic=self.matcher.arithmetic)
        ds, dt = pair.descriptors
        grid = ds.shape[-1]
        cell = grid_cells(query, self.matcher.frame, grid, arithmetic=self.matcher.arithmetic)[0]
        with torch.no_grad():
            sim = cosine_similarity_map(ds, dt, cell)
        tgt_frame = self.frames[1]
        sim = np.where(content_mask(tgt_frame, dt.shape[-1]), sim, np.nan)
        return grid_to_image(sim, tgt_frame)

    def dense(self, *, upsample: bool = False, return_tensors: str = "np") -> DenseOutput:
        """Match every source grid cell; returns a :class:`~corr.outputs.DenseOutput`.

        ``points0`` ``(g, g, 2)``: source cell centres (original source pixels); ``coords1``:
        the matched target points (absolute original target pixels); ``flow = coords1 -
        points0``; ``confidence`` ``(g, g)``; ``valid`` ``(g, g)`` bool: the source cell lies
        on image content. With ``upsample=True`` every field has the source image's size
        ``(H, W)``: ``points0[y, x] = (x, y)``, ``coords1`` and ``confidence`` interpolated
        bilinearly between cell centres (held constant beyond the outermost centres, so the
        outer half cell of the image takes its edge cell's match), ``valid`` from the nearest
        cell.
        """
        _check_return_tensors(return_tensors)
        out = dense_field(self, upsample=upsample)
        return to_torch(out, self.matcher.device) if return_tensors == "pt" else out

    def warp(
        self,
        *,
        min_confidence: float | None = None,
        src_mask: np.ndarray | None = None,
        return_tensors: str = "np",
    ) -> WarpOutput:
        """The source image warped into the target's frame through the dense correspondence.

        For every target pixel the matched source point comes from the reversed pair's
        upsampled dense field (``coords``, original source pixels ``(x, y)``); the source pixels
        are sampled there bilinearly with ``cv2.remap`` (needs ``pip install
        "semcorr[warp]"``). Returns a :class:`~corr.outputs.WarpOutput` whose fields all have
        the target's size ``(H_t, W_t)``: ``warped`` ``(H_t, W_t, 3)`` uint8 (0 where not
        valid), ``valid`` bool, ``coords`` ``(H_t, W_t, 2)`` and ``confidence``. ``valid``: the
        target pixel is on image content, its source point inside the source image, and its
        confidence is at least ``min_confidence`` (when given). ``src_mask`` (``(H_s, W_s)``
        bool, original source pixels) restricts the warp to a source region (an instance):
        target pixels match only source cells mostly inside it, and a point that the
        interpolation between cell centres puts outside it moves to its nearest pixel inside;
        a region that covers no grid cell by more than half is refused (too small for the
        feature resolution).
        """
        _check_return_tensors(return_tensors)
        out = warp_source(self, min_confidence=min_confidence, src_mask=src_mask)
        return to_torch(out, self.matcher.device) if return_tensors == "pt" else out

    def match_sparse(
        self,
        *,
        mutual: bool = True,
        max_matches: int | None = None,
        min_confidence: float | None = None,
        return_tensors: str = "np",
    ) -> MatchOutput:
        """Sparse matches on the image content of both images, for geometry estimation.

        Every source cell on the image content is matched to its most similar target cell on
        the image content (cosine similarity of the fused descriptors); with ``mutual=True``
        only pairs that are each other's nearest neighbour are kept. Sorted by confidence,
        most similar first, cut to ``max_matches`` and to ``confidence >= min_confidence``.
        Returns a :class:`~corr.outputs.MatchOutput` with ``keypoints0``/``keypoints1`` the
        two cells' centres in original source/target pixels, ``(M, 2)``, and ``confidence``
        ``(M,)`` in ``[-1, 1]``.
        """
        _check_return_tensors(return_tensors)
        out = sparse_matches(
            self, mutual=mutual, max_matches=max_matches, min_confidence=min_confidence
        )
        return to_torch(out, self.matcher.device) if return_tensors == "pt" else out

    def suggest_points(self, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` source points likely on the object both images show, spread over it
        (mutual nearest neighbours among each image's most distinctive cells; a heuristic,
        see :func:`corr.dense.shared_points`). Returns ``(K, 2)`` original source pixels and a
        ``(K,)`` bool: the point's cell and its match are mutual nearest neighbours."""
        return shared_points(self, n)

    # ------------------------------------------------------------------ helpers
    def _grid_points(self) -> np.ndarray:
        """The centres of the source cells on image content, in original source pixels."""
        fs, _ = self.features
        grid = self.descriptors[0].shape[-1]
        frame = self.frames[0]
        yy, xx = np.nonzero(content_mask(frame, grid))
        pts = frame.from_letterbox(
            grid_to_letterbox(np.stack([xx, yy], 1), self.matcher.frame, grid)
        )
        return clip_to_image(pts, fs.width, fs.height)

    def _transfer(self, points_lb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source points in the matching frame -> original target pixels and confidences."""
        m = self.matcher
        (fs, ft), (lb_s, lb_t) = self.features, self.frames
        with torch.no_grad():
            if m.method == "pixel":  # DIFT: on the original pixels of both images
                ds, dt = self.descriptors
                px = np.floor(lb_s.from_letterbox(points_lb) + 1e-6)
                px = clip_to_image(px, fs.width, fs.height)
                coords, conf = pixel_match(
                    ds, dt, torch.from_numpy(px), (fs.width, fs.height), (ft.width, ft.height)
                )
                return (
                    coords.cpu().numpy().astype(np.float64),
                    conf.cpu().numpy().astype(np.float64),
                )
            us, ut = self.unit_descriptors
            grid = us.shape[-1]
            cells = grid_cells(points_lb, m.frame, grid, arithmetic=m.arithmetic)
            coords, conf = match_points(
                us,
                ut,
                torch.from_numpy(cells),
                m.method,
                m.window,
                m.temperature,
                self.target_mask(),
                window_mode=m.window_mode,
                normalized=True,
            )
        centres = grid_to_letterbox(coords.cpu().numpy(), m.frame, grid, m.centre_shift)
        out = lb_t.from_letterbox(centres)
        if m.exclude_padding:
            out = clip_to_image(out, ft.width, ft.height)
        return out, conf.cpu().numpy().astype(np.float64)

    def target_mask(self) -> torch.Tensor | None:
        """``(g, g)`` bool: the target cells a match may land on (``None``: all of them, when
        the matcher keeps padding)."""
        if not self.matcher.exclude_padding:
            return None
        grid = (self._units or self.descriptors)[1].shape[-1]
        return torch.from_numpy(content_mask(self.frames[1], grid))

    def _mirrored_queries(self, points: np.ndarray) -> np.ndarray:
        """Source pixels ``(K, 2)`` -> their mirrored positions in the mirrored source's
        matching frame (the matcher's ``mirror``: ``W - 1 - x`` in the image, or ``T - x`` in
        the letterbox). With the twins' points, these are flip alignment's queries."""
        m = self.matcher
        fs, _ = self.features
        frame = self.frames[0]
        if m.mirror == "letterbox":
            return mirror_in_letterbox(
                frame.to_letterbox(points, arithmetic=m.arithmetic),
                m.frame,
                arithmetic=m.arithmetic,
            )
        return frame.to_letterbox(mirror_points(points, fs.width), arithmetic=m.arithmetic)

    def _align(self, result, flip_pairs, src_mask, tgt_mask, tgt_visible) -> dict[str, Any]:
        """Flip alignment of ``result`` (docs/protocol.md §6): where the mirrored source wins,
        point ``i`` takes the match of its twin's mirrored position."""
        pts = result["keypoints0"]
        n = len(pts)
        if flip_pairs is None:
            raise ValueError(
                "flip=True needs flip_pairs: the (i, j) index pairs of left/right twin points "
                "(e.g. from corr/tables/*_flip.json), or [] when no point has a twin"
            )
        perm = np.asarray(flip_pairs)
        if perm.ndim == 1 and len(perm) == n and np.array_equal(np.sort(perm), np.arange(n)):
            perm = perm.astype(np.int64)
        else:
            perm = flip_permutation_from_pairs(flip_pairs, n)
        decision = self.flip_decision(src_mask, tgt_mask)
        replaced = np.zeros(n, dtype=bool)
        plain = result["keypoints1"].copy()
        if decision.flipped:
            vis = ~np.isnan(pts).any(axis=1)
            use = vis & vis[perm]
            aligned = np.full_like(pts, np.nan)
            conf_a = np.full(n, np.nan)
            if use.any():
                queries = self._mirrored_queries(pts[perm][use])
                aligned[use], conf_a[use] = self.mirrored()._transfer(queries)
            result["keypoints1"], replaced = replace_where_aligned(
                result["keypoints1"], aligned, vis, perm, tgt_visible
            )
            result["confidence"] = np.where(replaced, conf_a, result["confidence"])
        result["flip"] = {
            "flipped": decision.flipped,
            "distance": decision.distance,
            "distance_flipped": decision.distance_flipped,
            "replaced": replaced,
            "masked": decision.masked,
            "keypoints1_plain": plain,
        }
        return result


def _name(image: Any) -> str:
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return repr(str(image))
    shape = getattr(image, "shape", None) or getattr(image, "size", None)
    return f"<{type(image).__name__} {tuple(shape) if shape is not None else ''}>"
