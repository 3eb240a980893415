"""corr: zero-shot semantic correspondence with fused Stable Diffusion and DINOv2 features.

The public names are imported lazily, so ``import corr.datasets`` or ``corr.metrics`` (which
need no model code) does not pay for torch, timm or diffusers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .lazy import lazy_getattr

__version__ = "0.1.0"

# the library logs, never prints (corr.logs); silent unless the application configures logging
logging.getLogger("corr").addHandler(logging.NullHandler())

_EXPORTS = {
    "Matcher": "corr.matcher",
    "match": "corr.api",
    "Pair": "corr.pair",
    "FlipDecision": "corr.pair",
    "clear_cache": "corr.api",
    "MatchOutput": "corr.outputs",
    "DenseOutput": "corr.outputs",
    "PRESETS": "corr.matcher",
    "Extractor": "corr.extractors",
    "ModuleExtractor": "corr.extractors",
    "create_extractor": "corr.extractors",
    "list_extractors": "corr.extractors",
    "register_extractor": "corr.extractors",
    "WeightsNotFoundError": "corr.weights",
    "FeatureStore": "corr.cache",
    "cosegment": "corr.cosegmentation",
    "CosegOutput": "corr.cosegmentation",
    "swap": "corr.swap",
    "SwapOutput": "corr.outputs",
}

__all__ = [
    "PRESETS",
    "DenseOutput",
    "MatchOutput",
    "clear_cache",
    "CosegOutput",
    "cosegment",
    "FeatureStore",
    "Extractor",
    "Matcher",
    "Pair",
    "FlipDecision",
    "ModuleExtractor",
    "WeightsNotFoundError",
    "create_extractor",
    "list_extractors",
    "match",
    "register_extractor",
    "swap",
    "SwapOutput",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import clear_cache, match
    from .cache import FeatureStore
    from .cosegmentation import CosegOutput, cosegment
    from .extractors import (
        Extractor,
        ModuleExtractor,
        create_extractor,
        list_extractors,
        register_extractor,
    )
    from .matcher import PRESETS, Matcher
    from .outputs import DenseOutput, MatchOutput, SwapOutput
    from .pair import FlipDecision, Pair
    from .swap import swap
    from .weights import WeightsNotFoundError


__getattr__ = lazy_getattr("corr", _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
