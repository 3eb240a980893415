"""The matcher: image -> letterbox -> extractors -> fusion -> descriptors, for any pair.

:class:`Matcher` holds the settings, the extractors and the feature cache: it turns an image
into features (:meth:`Matcher.features`, batched in :meth:`Matcher.extract`) and a pair's
features into fused descriptors (:meth:`Matcher.descriptors`). :meth:`Matcher.pair` returns a
:class:`~corr.pair.Pair`, which answers every question about one pair (matches, flip decision,
similarity, dense field, warp, sparse matches) from descriptors computed once;
``Matcher.match`` / ``dense`` / ``warp`` / ``match_sparse`` are one-line calls through it.
:func:`match` is the one-call API. Results follow the LoFTR / kornia convention
(:class:`~corr.outputs.MatchOutput`, a dataclass that also reads like a dict): ``keypoints0``
(source points) and ``keypoints1`` (their matches) as ``(N, 2)`` float arrays in *original
image pixels* ``(x, y)``, and ``confidence`` ``(N,)`` (cosine similarity of the matched cell).
(LightGlue, by contrast, returns ``matches`` index pairs and ``scores``.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .adapters import adapter_descriptor, open_adapter
from .alignment import FLIP_DISTANCES
from .cache import FeatureCache
from .devices import resolve_device
from .extraction import ExtractReport, ImageItem, extract_features
from .extractors import Extractor, build_extractors
from .extractors.base import autocast_name
from .features import ImageFeatures, image_features
from .fusion import build_descriptors_many, fusion_weights, l2_normalize
from .geometry import RESIZE_MODES, Letterbox, Stretch, make_frame
from .io import ImageLike
from .matching import METHODS, WINDOW_MODES
from .outputs import MatchOutput
from .pair import Pair
from .precision import resolve_precision
from .protocols import UNSET, Protocol, get_protocol, resolve_knobs
from .reuse import DescriptorMemo, per_image
from .shortcuts import PairShortcuts

logger = logging.getLogger(__name__)

#: Named extractor combinations; the first is the default.
PRESETS: dict[str, tuple[str, ...]] = {
    "sd-dino": ("sd15", "dinov2_vitb14"),
    "sd": ("sd15",),
    "dino": ("dinov2_vitb14",),
    "sd21-dino": ("sd21", "dinov2_vitb14"),
    "tiny": ("sd-tiny", "dinov2-tiny"),
}


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


class Matcher(PairShortcuts, nn.Module):
    """Reusable semantic matcher; models stay loaded and features cached between calls.

    An ``nn.Module``: ``.to(device)`` moves every extractor and the per-pair work there,
    ``.half()``/``.to(torch.bfloat16)`` casts the networks (features are still stored as
    fp16 and matched in float32); calling it is :meth:`match`.

    Args:
        extractors: a preset name (``"sd-dino"``, ``"sd"``, ``"dino"``, ``"sd21-dino"``,
            ``"tiny"``), or a sequence of registered names, ``"module:factory"`` specs or
            :class:`~corr.extractors.Extractor` instances (default: the protocol's, SD 1.5 +
            DINOv2-B for ``corr``). The *last* extractor defines the output grid (its finest
            map) and the matching frame (its input size).
        protocol: ``"corr"`` (default), ``"sd-dino"``, ``"geoaware"`` or ``"dift"``: sets every
            knob below to that reference's value at once (docs/protocol.md §9); a knob given
            explicitly overrides it and is listed in :meth:`config` under ``overrides``.
        fuse: ``alpha`` for two extractors: weight of the first (SD) group, ``1 - alpha`` of
            the second (DINO); ``1`` is SD alone, ``0`` DINO alone (zero-weight extractors are
            not even run).
        weights: explicit per-extractor fusion weights (overrides ``fuse``).
        method: ``"softargmax"`` (window soft-argmax, sub-cell), ``"nn"`` (nearest neighbour)
            or ``"pixel"`` (DIFT: features upsampled to each image's pixels).
        window, temperature: soft-argmax radius ``w`` (cells) and temperature ``beta``.
        window_mode: ``"exclude"`` the cells outside the window, or ``"zero"`` them (GeoAware).
        pca_dim: co-PCA dimension per reduced map (SD layers); ``None`` disables PCA.
        pca_method: ``"eigh"`` (exact) or ``"lowrank"`` (``torch.pca_lowrank``, seeded).
        fusion: ``"copca"`` (SD+DINO) or ``"concat"`` (GeoAware's raw concatenation).
        exclude_padding: never match into the target's letterbox padding, and clip predictions
            to the target image (the references do neither).
        arithmetic: keypoint -> cell in ``"exact"`` float64 or the references' ``"float32"``.
        centre_shift: added to a matched cell's centre in the frame (sd-dino: ``-0.5``).
        mirror: flip queries at ``W - 1 - x`` in the image (``"pixel"``) or ``T - x`` in the
            letterbox (``"letterbox"``).
        flip_distance: the flip decision's distance, ours (``"corr"``) or GeoAware's
            (``"reference"``).
        resize: model input ``"letterbox"`` (aspect kept) or ``"stretch"`` (DIFT).
        pretrained: load real weights (default). ``False`` builds the architectures with random
            weights, for tests and speed benchmarks only.
        extractor_options: per-name keyword arguments for the factories, e.g.
            ``{"sd15": {"timestep": 50}}``; ``dtype`` (if given) goes to every factory;
            ``"auto"``: bf16 (as autocast) where this device runs it faster, else fp32
            (:mod:`corr.precision`; the choice is :attr:`precision`).
        autocast: ``"bf16"`` or ``"fp16"``: run every extractor under ``torch.autocast`` (mixed
            precision; the weights keep ``dtype``, the stored features are as without it); a
            different feature-cache key from the full-precision features. ``None``: off.
        cache_dir: folder of the on-disk feature cache (``None``: in memory only).
        memory_cache, memory_cache_bytes: the in-memory feature LRU, in images and in bytes.
        compile: run each extractor through ``torch.compile`` (off by default: on this project's
            CPU it made the tiny test models 1.6-1.7x faster per call after a first call of
            20 s (DINOv2) and 130 s (SD); measure it on your device before relying on it).
        device: ``"auto"`` (default; CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ... Extractors built here go there. Extractor objects you pass keep
            the device you put them on unless ``device`` is given explicitly (so SD on
            ``cuda:0`` and DINOv2 on ``cuda:1`` work); their maps come to the matcher's device
            (the first extractor's, unless ``device`` is given) for fusion and matching.
        exif_transpose: apply a file's EXIF orientation before anything else (phone photos), so
            that points and results are in the frame a viewer shows. Off by default and in
            every protocol: benchmark keypoints are annotated on the stored pixels.
        adapter: a supervised adapter (:mod:`corr.adapters`) that replaces fusion: a
            registered name (``geoaware-spair``, ``geoaware-ap10k``), a path (ours, or a
            GeoAware-SC ``.PTH``) or an ``AggregationNetwork``. Every extractor runs (``fuse``,
            ``weights``, ``pca_dim`` and ``fusion`` do not apply and are refused); without
            ``extractors``, those it was trained on; ``method`` and ``window`` default to the
            adapter's evaluation (GeoAware-SC's: window soft-argmax, radius 7). The other
            knobs stay the protocol's; a protocol other than the one of its training features
            (``geoaware`` for GeoAware-SC's adapters) is logged as a warning.
    """

    def __init__(
        self,
        extractors: str | Sequence[str | Extractor] | None = None,
        *,
        protocol: str | Protocol = "corr",
        fuse: float | None = None,
        weights: Sequence[float] | None = None,
        method: str | None = None,
        window: int | None = None,
        temperature: float | None = None,
        window_mode: str | None = None,
        pca_dim: int | None = UNSET,
        fusion: str | None = None,
        pca_method: str | None = None,
        exclude_padding: bool | None = None,
        arithmetic: str | None = None,
        centre_shift: float | None = None,
        mirror: str | None = None,
        flip_distance: str | None = None,
        resize: str | None = None,
        pretrained: bool = True,
        extractor_options: dict[str, dict[str, Any]] | None = None,
        dtype: str | torch.dtype | None = None,
        autocast: str | torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        memory_cache: int = 4,
        memory_cache_bytes: int | None = None,
        device: str | torch.device | None = "auto",
        seed: int = 0,
        compile: bool = False,
        exif_transpose: bool = False,
        adapter: str | os.PathLike | nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.protocol = get_protocol(protocol)
        self.adapter_record: dict[str, Any] | None = None
        adapter_module = None
        if adapter is not None:
            adapter_module, self.adapter_record = open_adapter(adapter)
            trained_on = self.adapter_record["features"]
            if extractors is None:  # the features it was trained on
                extractors = list(trained_on["extractors"])
            if trained_on["protocol"] != self.protocol.name:
                logger.warning(
                    "adapter %s was trained on %s features, used here with protocol %s",
                    self.adapter_record["name"],
                    trained_on["protocol"],
                    self.protocol.name,
                )
        if extractors is None:
            extractors = list(self.protocol.extractors)
        given = {
            "fuse": fuse,
            "method": method,
            "window": window,
            "temperature": temperature,
            "window_mode": window_mode,
            "pca_dim": pca_dim,
            "pca_method": pca_method,
            "fusion": fusion,
            "exclude_padding": exclude_padding,
            "arithmetic": arithmetic,
            "centre_shift": centre_shift,
            "mirror": mirror,
            "flip_distance": flip_distance,
            "resize": resize,
        }
        knobs, self.overrides = resolve_knobs(self.protocol, given)
        specs = (
            list(PRESETS[extractors])
            if isinstance(extractors, str) and extractors in PRESETS
            else ([extractors] if isinstance(extractors, (str, Extractor)) else list(extractors))
        )
        if not specs:
            raise ValueError(
                "extractors is empty: give a preset name, registered names or Extractor objects"
            )
        if adapter_module is not None:
            given_fusion = [
                k for k in ("fuse", "pca_dim", "fusion") if given[k] not in (None, UNSET)
            ]
            if given_fusion or weights is not None:
                raise ValueError(
                    f"{', '.join(given_fusion + (['weights'] if weights is not None else []))}: "
                    "an adapter replaces fusion (it takes every extractor's raw maps); drop "
                    "these, or the adapter"
                )
            evaluation = self.adapter_record["evaluation"]
            if method is None:
                knobs["method"] = "softargmax" if evaluation["soft_eval"] else "nn"
            if window is None:
                knobs["window"] = int(evaluation["soft_eval_window"])
        all_weights = (
            [1.0] * len(specs)
            if adapter_module is not None
            else fusion_weights(len(specs), knobs["fuse"], weights)
        )
        explicit = device not in (None, "auto")
        target = resolve_device(device)
        dtype, autocast, chosen = resolve_precision(dtype, autocast, target)  # dtype="auto"
        self.precision: dict[str, Any] | None = None if chosen is None else chosen.as_dict()
        built = build_extractors(
            specs,
            all_weights,
            protocol=self.protocol,
            pretrained=pretrained,
            options=extractor_options,
            dtype=dtype,
            device=target if explicit else None,
            default_device=target,
            autocast=autocast,
            compile=compile,
        )
        extractor_list = [ext for ext, _ in built]
        self.weights: list[float] = [w for _, w in built]
        self.extractors = nn.ModuleList(extractor_list)
        self.adapter = adapter_module  # a submodule: moves with .to()
        # where fusion and matching run; moves with .to() (an empty, non-float buffer)
        work = target if explicit or not extractor_list else extractor_list[0].device
        self.register_buffer("_anchor", torch.empty(0, dtype=torch.bool, device=work), False)
        if self.adapter is not None:
            self.adapter.to(work)
        self.specs = [
            s if isinstance(s, str) else getattr(s, "name", type(s).__name__) for s in specs
        ]
        self.method = knobs["method"]
        self.window = int(knobs["window"])
        self.temperature = float(knobs["temperature"])
        self.window_mode = knobs["window_mode"]
        self.pca_dim = knobs["pca_dim"]
        self.fusion = knobs["fusion"]
        self.pca_method = knobs["pca_method"]
        self.exclude_padding = bool(knobs["exclude_padding"])
        self.arithmetic = knobs["arithmetic"]
        self.centre_shift = float(knobs["centre_shift"])
        self.mirror = knobs["mirror"]
        self.flip_distance = knobs["flip_distance"]
        self.resize = knobs["resize"]
        self.seed = seed
        self.exif_transpose = bool(exif_transpose)
        self.cache = FeatureCache(
            cache_dir, memory_items=memory_cache, memory_bytes=memory_cache_bytes
        )
        # per-image descriptors where no co-PCA ties them to a pair (corr.reuse): a
        # descriptor and its unit version per image
        self.reuse = DescriptorMemo(items=2 * memory_cache, max_bytes=memory_cache_bytes)
        # validate the matching options now rather than at the first pair
        if self.window < 0 or self.temperature <= 0:
            raise ValueError(
                f"window must be >= 0 and temperature > 0, got window={self.window}, "
                f"temperature={self.temperature}"
            )
        for name, choices in (
            ("method", METHODS),
            ("window_mode", WINDOW_MODES),
            ("fusion", ("copca", "concat")),
            ("pca_method", ("eigh", "lowrank")),
            ("arithmetic", ("exact", "float32")),
            ("mirror", ("pixel", "letterbox")),
            ("flip_distance", FLIP_DISTANCES),
            ("resize", RESIZE_MODES),
        ):
            _check_choice(name, getattr(self, name), choices)

    # ------------------------------------------------------------------ configuration
    @property
    def device(self) -> torch.device:
        """Where fusion and matching run (feature maps are brought here)."""
        return self._anchor.device

    def forward(self, src, tgt, points=None, **kwargs) -> MatchOutput:
        """Same as :meth:`match`."""
        return self.match(src, tgt, points, **kwargs)

    @property
    def frame(self) -> int:
        """Side of the letterbox frame in which matching happens (the last extractor's input)."""
        return self.extractors[-1].input_size

    def config(self) -> dict[str, Any]:
        """Everything that determines the results, as JSON-serialisable data: the protocol with
        every knob it set, the knobs given explicitly that differ from it, and the values used."""
        return {
            "protocol": self.protocol.as_dict(),
            "overrides": dict(sorted(self.overrides.items())),
            "extractors": [self._extractor_config(e, None) for e in self.extractors],
            "weights": self.weights,
            "method": self.method,
            "window": self.window,
            "temperature": self.temperature,
            "window_mode": self.window_mode,
            "pca_dim": self.pca_dim,
            "pca_method": self.pca_method,
            "fusion": self.fusion,
            "exclude_padding": self.exclude_padding,
            "arithmetic": self.arithmetic,
            "centre_shift": self.centre_shift,
            "mirror": self.mirror,
            "flip_distance": self.flip_distance,
            "resize": self.resize,
            "frame": self.frame,
            **({"exif_transpose": True} if self.exif_transpose else {}),  # recorded when on
            **({"adapter": self._adapter_config()} if self.adapter is not None else {}),
        }

    def _adapter_config(self) -> dict[str, Any]:
        """The adapter as a run records it: name, SHA-256 of its weights, recipe, evaluation
        (its path stays out: the same weights anywhere are the same run)."""
        record = dict(self.adapter_record or {})
        record.pop("path", None)
        record["groups"] = self.adapter.config.describe_groups()
        record["projection_dim"] = self.adapter.config.projection_dim
        return record

    @staticmethod
    def _extractor_config(ext: Extractor, category: str | None) -> dict[str, Any]:
        cfg = dict(ext.config())
        if ext.autocast is not None:  # recorded only when on: keys made without it stay valid
            cfg["autocast"] = autocast_name(ext.autocast)
        if getattr(ext, "uses_category", False):
            cfg["category"] = category
        return cfg

    # ------------------------------------------------------------------ features
    def cache_config(self, ext: Extractor, category: str | None) -> dict[str, Any]:
        """What keys extractor ``ext``'s features in the cache (its configuration, the category
        when its prompt uses one, the resize mode when not letterbox); written beside them."""
        cfg = self._extractor_config(ext, category)
        if self.resize != "letterbox":
            cfg["resize"] = self.resize  # letterbox entries keep their keys
        return cfg

    def features(
        self,
        image: ImageLike | np.ndarray,
        category: str | None = None,
        name: str = "image",
        mirrored: bool = False,
    ) -> ImageFeatures:
        """Feature maps of one image (its horizontal mirror with ``mirrored=True``), from the
        cache when it has them; a file already extracted is not decoded again. Maps are
        float32 on :attr:`device` (the fp16-rounded values the cache stores)."""
        return image_features(
            list(self.extractors),
            self.cache,
            self.cache_config,
            image,
            category,
            name,
            mirrored,
            resize=self.resize,
            exif_transpose=self.exif_transpose,
            device=self.device,
        )

    def extract(
        self,
        images: Sequence[ImageLike | ImageItem],
        *,
        categories: Sequence[str | None] | str | None = None,
        mirrored: bool = False,
        batch_size: int = 1,
        num_workers: int = 0,
        skip_bad: bool = False,
        progress: bool = True,
    ) -> ExtractReport:
        """Extract and cache the features of many images in batches (see :mod:`corr.extraction`).

        ``images``: paths, arrays or :class:`~corr.extraction.ImageItem` (which carry their own
        category and mirror flag); ``categories`` fills a ``{category}`` prompt (one for all, or
        one per image); ``mirrored=True`` extracts the mirrored images (flip alignment).
        ``num_workers`` DataLoader processes decode and letterbox while the models run. Cached
        images are skipped without being decoded. Returns an :class:`ExtractReport`; later
        :meth:`match` calls on these images read the cache (give the matcher a ``cache_dir`` and
        a large enough ``memory_cache`` to keep them).
        """
        if categories is None or isinstance(categories, str):
            categories = [categories] * len(images)
        if len(categories) != len(images):
            raise ValueError(f"{len(images)} images but {len(categories)} categories")
        items = [
            im if isinstance(im, ImageItem) else ImageItem(im, cat, mirrored)
            for im, cat in zip(images, categories, strict=True)
        ]
        return extract_features(
            self.extractors,
            self.cache_config,
            self.cache,
            items,
            device=self.device,
            resize=self.resize,
            batch_size=batch_size,
            num_workers=num_workers,
            skip_bad=skip_bad,
            progress=progress,
            exif_transpose=self.exif_transpose,
        )

    def descriptors(
        self, src: ImageFeatures, tgt: ImageFeatures
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused ``(D, g, g)`` descriptors of a pair (co-PCA is fitted on the pair)."""
        ds, dt = self.descriptors_many([src, tgt])
        return ds, dt

    def descriptors_many(
        self, images: Sequence[ImageFeatures], weights: Sequence[float] | None = None
    ) -> list[torch.Tensor]:
        """Fused ``(D, g, g)`` descriptors of ``N`` images with one co-PCA fitted on all of
        them (for a pair, the same as :meth:`descriptors`); ``g`` is the first image's grid.
        ``weights``: fusion weights per extractor (default: the matcher's). With an
        :attr:`adapter`, each image's descriptor is the adapter's (its own input, no co-PCA):
        ``(P, g, g)`` unit cells. A descriptor that no co-PCA ties to the other images is kept
        per image in :attr:`reuse` and reused (:mod:`corr.reuse`; the same tensor)."""
        w = tuple(self.weights if weights is None else (float(x) for x in weights))
        reused = per_image(self, images, w, "descriptor", lambda f: self._build([f], w)[0])
        return self._build(images, w) if reused is None else reused

    def unit_descriptors(
        self, images: Sequence[ImageFeatures], weights: Sequence[float] | None = None
    ) -> list[torch.Tensor] | None:
        """The per-image reusable descriptors (see :meth:`descriptors_many`) normalised per
        cell, ``(D, g, g)``, as matching uses them (:func:`corr.matching.match_points` with
        ``normalized=True``), kept in :attr:`reuse`; ``None`` when co-PCA ties them to the
        pair."""
        w = tuple(self.weights if weights is None else (float(x) for x in weights))
        return per_image(
            self, images, w, "unit", lambda f: l2_normalize(self.descriptors_many([f], w)[0])
        )

    def _build(
        self, images: Sequence[ImageFeatures], weights: Sequence[float]
    ) -> list[torch.Tensor]:
        if self.adapter is not None:
            return [adapter_descriptor(self.adapter, f.maps) for f in images]
        grid = max(m.shape[-1] for m in images[0].maps[-1].values())
        return build_descriptors_many(
            [f.maps for f in images],
            reduce=[e.reduce for e in self.extractors],
            weights=list(weights),
            grid=grid,
            pca_dim=self.pca_dim,
            mode=self.fusion,
            pca_method=self.pca_method,
            seed=self.seed,
        )

    # ------------------------------------------------------------------ pairs
    def matching_frame(self, width: int, height: int) -> Letterbox | Stretch:
        """The matching frame of a ``width x height`` image (letterbox or stretch, side
        :attr:`frame`): original pixels <-> the frame in which cells are matched."""
        return make_frame(width, height, self.frame, self.resize)

    def pair(
        self,
        src: ImageLike,
        tgt: ImageLike,
        category: str | tuple[str | None, str | None] | None = None,
        *,
        weights: Sequence[float] | None = None,
    ) -> Pair:
        """A :class:`~corr.pair.Pair` of ``src`` and ``tgt``: features and fused descriptors
        computed on first need and kept, so every question about the pair (``match``,
        ``flip_decision``, ``similarity``, ``dense``, ``warp``, ``match_sparse``) reuses them.
        ``category`` fills a ``{category}`` SD prompt (``(src_category, tgt_category)`` when
        they differ); ``weights``: this pair's fusion weights per extractor (default: the
        matcher's)."""
        return Pair(self, src, tgt, category, weights)
