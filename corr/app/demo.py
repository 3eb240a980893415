"""The interactive demo's logic, independent of the web page: backbones, pairs, clicks, state.

:class:`DemoApp` keeps one matcher loaded (the backbone in use) and the last few
:class:`~corr.pair.Pair` objects, so a pair's features and descriptors are computed once and
every click is a lookup: :func:`answer_click` is ``pair.match`` for the point (flip alignment
with the point as its own twin once the page has decided the orientation, as
``Matcher.match(..., flip=True, flip_pairs=[])``) and ``pair.similarity`` for the heat map.
The page (:mod:`corr.app.ui`) is a thin layer over it. All points are ``(x, y)`` in original
image pixels.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..cache import image_key
from ..fusion import fusion_weights
from ..io import ImageLike, load_image
from ..matcher import PRESETS, Matcher
from ..pair import Pair
from ..samples import SAMPLE_PAIRS, sample_path
from ..weights import WeightsNotFoundError, resolve
from .render import (
    display_scale,
    draw_points,
    from_display,
    heatmap_overlay,
    marker_radius,
    point_color,
    resized,
    to_display,
)

logger = logging.getLogger(__name__)

STANDIN = "mobilenet"
ADAPTER = "adapter"  # the backbone of python -m corr.app --adapter
#: The page's backbone choices: key -> (label, extractors for :class:`~corr.Matcher`).
BACKBONES: dict[str, tuple[str, str | list[str]]] = {
    "sd-dino": ("SD 1.5 + DINOv2-B (SD+DINO, fused)", "sd-dino"),
    "dino": ("DINOv2-B", "dino"),
    "sd": ("SD 1.5", "sd"),
    STANDIN: (
        "MobileNetV2, ImageNet (small stand-in, not SD+DINO)",
        ["corr.contrib.mobilenet:mobilenetv2"],
    ),
}


def bundled_examples() -> list[list[str]]:
    """The bundled sample pairs (:mod:`corr.samples`, shipped with the package): the two
    tigers, the gazelle and the jaguar."""
    return [[str(sample_path(a)), str(sample_path(b))] for a, b in SAMPLE_PAIRS]


def backbone_problem(key: str) -> str | None:
    """Why a backbone cannot run here (missing weights or package), or ``None``."""
    if key == STANDIN:
        try:
            from ..contrib.mobilenet import weights_path

            weights_path()
        except FileNotFoundError as err:  # WeightsNotFoundError: names the download command
            return str(err)
        return None
    names = PRESETS[BACKBONES[key][1]]  # type: ignore[index]
    missing = []
    for name in names:
        try:
            resolve(name, allow_download=False)
        except WeightsNotFoundError:
            missing.append(name)
    if missing:
        return (
            f"weights not found for {', '.join(missing)}: get them with "
            f"`python -m corr.weights download {' '.join(missing)}` (needs network) or put them "
            "in weights/ (see `python -m corr.weights list`)"
        )
    return None


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


def answer_click(pair: Pair, x: float, y: float, mirrored: bool = False) -> ClickResult:
    """Match source pixel ``(x, y)`` of ``pair``; with ``mirrored=True`` through flip alignment
    (the point is its own twin), so it comes from the mirrored source when that wins. Raises
    ``ValueError`` outside the source image."""
    start = time.perf_counter()
    out = pair.match([[float(x), float(y)]], flip=mirrored, flip_pairs=[])
    used_mirror = bool(mirrored and out.flip["replaced"][0])
    heat = pair.similarity((x, y), mirrored=used_mirror)
    return ClickResult(
        source=(float(out.keypoints0[0, 0]), float(out.keypoints0[0, 1])),
        target=(float(out.keypoints1[0, 0]), float(out.keypoints1[0, 1])),
        confidence=float(out.confidence[0]),
        heatmap=heat,
        mirrored=used_mirror,
        seconds=time.perf_counter() - start,
    )


@dataclass
class PageState:
    """One browser tab's state: its pair, its clicked points and its orientation."""

    key: tuple | None = None  # (backbone, fusion weights, source key, target key)
    src: np.ndarray | None = field(default=None, repr=False)
    tgt: np.ndarray | None = field(default=None, repr=False)
    clicks: list[ClickResult] = field(default_factory=list, repr=False)
    mirrored: bool = False


class DemoApp:
    """Backbones, pairs and the pictures of the page.

    Args:
        device: where the models run (``"auto"``: CUDA, then MPS, then CPU).
        backbone: the initial backbone key (default: SD+DINO when its weights are here,
            otherwise the MobileNetV2 stand-in).
        max_display: longer side of the images shown on the page, in pixels.
        pairs: how many pairs keep their descriptors in memory.
        adapter: a supervised adapter (registered name or path): adds the backbone
            ``"adapter"`` (the extractors it was trained on, through it), the initial one.
    """

    def __init__(
        self,
        device: str = "auto",
        backbone: str | None = None,
        max_display: int = 1024,
        pairs: int = 4,
        adapter: str | None = None,
    ) -> None:
        self.device = device
        self.max_display = max_display
        self.adapter = adapter
        self.backbones: dict[str, tuple[str, str | list[str] | None]] = dict(BACKBONES)
        self.problems = {key: backbone_problem(key) for key in BACKBONES}
        if adapter is not None:
            self.backbones[ADAPTER] = (f"trained adapter: {adapter}", None)
            self.problems[ADAPTER] = None  # its weights are checked when it is built
            backbone = backbone or ADAPTER
        if backbone is None:
            backbone = "sd-dino" if self.problems["sd-dino"] is None else STANDIN
        if backbone not in self.backbones:
            raise ValueError(f"backbone must be one of {sorted(self.backbones)}, got {backbone!r}")
        self.backbone = backbone
        self._matcher: tuple[str, Matcher] | None = None
        self._pairs: OrderedDict[tuple, Pair] = OrderedDict()
        self._max_pairs = pairs

    # ------------------------------------------------------------------ text for the page
    def notice(self) -> str:
        """What the page says about the backbones before anything is clicked."""
        if self.problems["sd-dino"] is None:
            return "SD 1.5 and DINOv2 weights found: the default backbone is SD+DINO."
        lines = [
            "**SD 1.5 / DINOv2 weights are missing on this machine**, so the page starts with "
            "the small ImageNet MobileNetV2 stand-in: its matches are much weaker than SD+DINO's "
            "and only show that the pipeline works.",
            f"To use SD+DINO: {self.problems['sd-dino']}.",
        ]
        if self.problems[STANDIN] is not None:
            lines.append(f"The stand-in cannot run either: {self.problems[STANDIN]}.")
        return "\n\n".join(lines)

    # ------------------------------------------------------------------ models and pairs
    def matcher(self, backbone: str) -> Matcher:
        """The matcher of ``backbone`` (one backbone in memory at a time)."""
        if backbone not in self.backbones:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(self.backbones)}")
        if self._matcher is not None and self._matcher[0] == backbone:
            return self._matcher[1]
        problem = self.problems.get(backbone)
        if problem is not None:
            raise WeightsNotFoundError(f"{self.backbones[backbone][0]}: {problem}")
        self._matcher = None
        self._pairs.clear()
        extractors = self.backbones[backbone][1]
        adapter = self.adapter if backbone == ADAPTER else None
        matcher = Matcher(extractors, device=self.device, memory_cache=8, adapter=adapter)
        self._matcher = (backbone, matcher)
        logger.info("demo backbone: %s on %s", backbone, matcher.device)
        return matcher

    def weights_for(self, backbone: str, alpha: float) -> list[float]:
        """Fusion weights: ``(alpha, 1 - alpha)`` for SD+DINO, one weight otherwise."""
        n = len(self.matcher(backbone).extractors)
        return fusion_weights(n, alpha if n == 2 else None, None)

    def pair(
        self, backbone: str, alpha: float, src: np.ndarray, tgt: np.ndarray
    ) -> tuple[tuple, Pair]:
        """The pair's key and :class:`~corr.pair.Pair` (kept for the last few pairs)."""
        weights = self.weights_for(backbone, alpha)
        key = (backbone, tuple(weights), image_key(src), image_key(tgt))
        return key, self._pair(key, src, tgt)

    def _pair(self, key: tuple, src: np.ndarray, tgt: np.ndarray) -> Pair:
        found = self._pairs.get(key)
        if found is not None:
            self._pairs.move_to_end(key)
            return found
        backbone, weights = key[0], list(key[1])
        pair = self.matcher(backbone).pair(src, tgt, weights=weights)
        self._pairs[key] = pair
        while len(self._pairs) > self._max_pairs:
            self._pairs.popitem(last=False)
        return pair

    # ------------------------------------------------------------------ the page's actions
    def load(
        self, src: ImageLike | None, tgt: ImageLike | None, backbone: str, alpha: float
    ) -> tuple[PageState, str]:
        """New images or settings: a fresh state (no points) and a status line."""
        if src is None or tgt is None:
            return PageState(), "Upload a source and a target image (or pick a bundled pair)."
        a = load_image(src, name="source image")
        b = load_image(tgt, name="target image")
        start = time.perf_counter()
        key, pair = self.pair(backbone, alpha, a, b)
        pair.prepare()  # features and fused descriptors, once for every click to come
        state = PageState(key=key, src=a, tgt=b)
        return state, (
            f"Features ready ({self.backbones[backbone][0]}, "
            f"{time.perf_counter() - start:.1f} s for the pair). "
            "Click a point on the source."
        )

    def click(self, state: PageState, x_shown: float, y_shown: float) -> tuple[PageState, str]:
        """A click at pixel ``(x_shown, y_shown)`` of the shown source image."""
        pair = self._state_pair(state)
        h, w = state.src.shape[:2]
        scale = display_scale(w, h, self.max_display)
        x, y = from_display((x_shown, y_shown), scale)
        x = min(max(x, 0.0), w - 1.0)
        y = min(max(y, 0.0), h - 1.0)
        result = answer_click(pair, x, y, mirrored=state.mirrored)
        state.clicks.append(result)
        n = len(state.clicks)
        return state, (
            f"Point {n}: source ({result.source[0]:.1f}, {result.source[1]:.1f}) -> target "
            f"({result.target[0]:.1f}, {result.target[1]:.1f}), similarity "
            f"{result.confidence:.3f}{' (mirrored source)' if result.mirrored else ''}; "
            f"answered in {result.seconds * 1000:.0f} ms."
        )

    def flip(self, state: PageState) -> tuple[PageState, str]:
        """Decide the pair's orientation; re-match the clicked points accordingly."""
        pair = self._state_pair(state)
        decision = pair.flip_decision()
        state.mirrored = decision.flipped
        state.clicks = [
            answer_click(pair, *c.source, mirrored=state.mirrored) for c in state.clicks
        ]
        return state, "Flip alignment: " + decision.describe() + "."

    def clear(self, state: PageState) -> tuple[PageState, str]:
        """Forget the clicked points (the orientation stays)."""
        state.clicks = []
        return state, "Points cleared. Click a point on the source."

    def _state_pair(self, state: PageState) -> Pair:
        """The tab's pair, by its key (rebuilt from the tab's images if it was dropped)."""
        if state.key is None or state.src is None or state.tgt is None:
            raise ValueError("no image pair yet: upload a source and a target image first")
        return self._pair(state.key, state.src, state.tgt)

    # ------------------------------------------------------------------ pictures and text
    def pictures(self, state: PageState) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The shown source (clicked points) and target (matches over the last click's
        similarity heat map), each at most ``max_display`` pixels on its longer side."""
        if state.src is None or state.tgt is None:
            return None, None
        ss = display_scale(state.src.shape[1], state.src.shape[0], self.max_display)
        st = display_scale(state.tgt.shape[1], state.tgt.shape[0], self.max_display)
        colors = [point_color(i) for i in range(len(state.clicks))]
        src = resized(state.src, ss)
        src = draw_points(
            src,
            [to_display(c.source, ss) for c in state.clicks],
            colors,
            radius=marker_radius(src),
        )
        tgt = state.tgt
        if state.clicks:
            tgt = heatmap_overlay(tgt, state.clicks[-1].heatmap)
        tgt = resized(tgt, st)
        tgt = draw_points(
            tgt,
            [to_display(c.target, st) for c in state.clicks],
            colors,
            radius=1.5 * marker_radius(tgt),
            style="ring",
        )
        return src, tgt

    @staticmethod
    def matches_json(state: PageState) -> str:
        """The clicked points and their matches as JSON (original pixels of each image)."""
        rows = [
            {
                "point": i + 1,
                "source_xy": [round(c.source[0], 3), round(c.source[1], 3)],
                "target_xy": [round(c.target[0], 3), round(c.target[1], 3)],
                "similarity": round(c.confidence, 4),
                "mirrored_source": c.mirrored,
            }
            for i, c in enumerate(state.clicks)
        ]
        return "[\n" + ",\n".join(" " + json.dumps(r) for r in rows) + "\n]" if rows else "[]"
