"""One image's features: from the feature cache when it has them, else from the extractors.

:func:`image_features` is what :meth:`corr.Matcher.features` does: a file the cache's path index
knows is not decoded again; otherwise the image is decoded (EXIF orientation on request,
mirrored on request), keyed by its pixels, letterboxed to each extractor's input and run. The
maps are rounded to fp16 (what the cache stores) whether fresh or cached, so results never
depend on the cache's state.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .cache import FeatureCache, config_key, image_key
from .extractors import Extractor
from .geometry import make_frame
from .io import ImageLike, load_image

__all__ = ["ImageFeatures", "image_features"]


@dataclass
class ImageFeatures:
    """The feature maps of one image: one ``{name: (C, h, w)}`` dict per extractor.

    ``sources``: the feature-cache configuration key of each extractor's maps (with ``key``,
    what identifies them, so a matcher may reuse what it derived from them; empty when
    unknown)."""

    key: str
    width: int
    height: int
    maps: list[dict[str, torch.Tensor]] = field(repr=False)
    sources: tuple[str, ...] = ()


def image_features(
    extractors: Sequence[Extractor],
    cache: FeatureCache,
    cache_config: Callable[[Extractor, str | None], dict[str, Any]],
    image: ImageLike | np.ndarray,
    category: str | None = None,
    name: str = "image",
    mirrored: bool = False,
    *,
    resize: str = "letterbox",
    exif_transpose: bool = False,
    device: torch.device | str = "cpu",
) -> ImageFeatures:
    """The maps of ``image`` (its horizontal mirror with ``mirrored=True``) under each of
    ``extractors``, float32 on ``device``; ``cache_config(ext, category)`` keys the cache."""

    def on_device(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(device, torch.float32, non_blocking=True) for k, v in maps.items()}

    is_path = isinstance(image, (str, os.PathLike))
    configs = [cache_config(e, category) for e in extractors]
    sources = tuple(config_key(c) for c in configs)
    found_key, cached = None, [None] * len(extractors)
    if is_path:
        found = cache.lookup_path(image, mirrored, exif_transpose)
        if found is not None:
            found_key, w, h = found
            cached = [cache.get(found_key, c) for c in configs]
            if all(m is not None for m in cached):
                return ImageFeatures(found_key, w, h, [on_device(m) for m in cached], sources)
    arr = load_image(image, name=name, exif_transpose=exif_transpose)
    if mirrored:
        arr = np.ascontiguousarray(arr[:, ::-1])
    h, w = arr.shape[:2]
    key = image_key(arr)
    looked_up = key == found_key  # the cache was already asked for this key above
    if not looked_up:  # (an index entry pointing elsewhere found nothing of this image)
        cached = [None] * len(extractors)
    maps_all = []
    for ext, maps, cfg in zip(extractors, cached, configs, strict=True):
        if maps is None and not looked_up:
            maps = cache.get(key, cfg)
        if maps is None:
            lb = make_frame(w, h, ext.input_size, resize)
            boxed = lb.apply(arr, resample=ext.resample)
            pixels = torch.from_numpy(boxed).permute(2, 0, 1)[None].float().div(255.0)
            out = ext(pixels.to(ext.device), category=category)
            # use the fp16-rounded maps the cache stores, so results never depend on
            # whether an image's features were fresh or cached (e.g. after a resume)
            maps = {k: v[0].detach().half().float() for k, v in out.items()}
            cache.put(key, cfg, maps)
        maps_all.append(on_device(maps))
    if is_path:
        cache.remember_path(image, mirrored, key, w, h, exif=exif_transpose)
    return ImageFeatures(key=key, width=w, height=h, maps=maps_all, sources=sources)
