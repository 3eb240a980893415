"""Supervised adapters: a small trained network on top of frozen extractor features.

:class:`AggregationNetwork` is GeoAware-SC's post-processor (one bottleneck per feature group,
softmax-mixed), generalised to any groups; :class:`AdapterConfig` says which groups and how
wide; :func:`adapter_input` builds its input from a matcher's extractor maps exactly as the
reference does, and :func:`normalize_descriptor` its output; ``checkpoints`` loads GeoAware-SC's
released ``.PTH`` files and saves ours as safetensors + JSON. The training objectives live in
:mod:`corr.train`.
"""

from __future__ import annotations

from .aggregation import AggregationNetwork, BottleneckBlock
from .checkpoints import (
    apply_reference_weights,
    load_adapter,
    load_reference_checkpoint,
    open_adapter,
    read_config,
    save_adapter,
    trained_features,
)
from .config import AdapterConfig
from .inputs import adapter_descriptor, adapter_groups, adapter_input, normalize_descriptor

__all__ = [
    "AdapterConfig",
    "AggregationNetwork",
    "BottleneckBlock",
    "adapter_descriptor",
    "adapter_groups",
    "adapter_input",
    "apply_reference_weights",
    "load_adapter",
    "load_reference_checkpoint",
    "normalize_descriptor",
    "open_adapter",
    "read_config",
    "save_adapter",
    "trained_features",
]
