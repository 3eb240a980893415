"""Feature extractors: the base contract, the registry and the built-in models."""

from . import cleandift, dino, dinov3, sd  # noqa: F401  (register the built-in models)
from .base import Extractor, FeatureMaps, ModuleExtractor, module_fingerprint
from .registry import (
    build_extractors,
    create_extractor,
    describe_extractors,
    list_extractors,
    load_factory,
    register_extractor,
)

__all__ = [
    "Extractor",
    "build_extractors",
    "FeatureMaps",
    "ModuleExtractor",
    "create_extractor",
    "describe_extractors",
    "list_extractors",
    "load_factory",
    "module_fingerprint",
    "register_extractor",
]
