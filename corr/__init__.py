"""corr: zero-shot semantic correspondence with fused Stable Diffusion and DINOv2 features."""

from .extractors import (
    Extractor,
    ModuleExtractor,
    create_extractor,
    list_extractors,
    register_extractor,
)
from .pipeline import PRESETS, Matcher, match

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "Extractor",
    "Matcher",
    "ModuleExtractor",
    "create_extractor",
    "list_extractors",
    "match",
    "register_extractor",
]
