"""Per-image descriptors reused across pairs, where nothing ties them to a pair.

A fused descriptor depends on its partner image only through co-PCA (docs/protocol.md §4): an
SD layer is projected on the principal components of *both* images' rows. Where no map is
co-PCA reduced (GeoAware's raw concatenation, extractors that are not reduced such as DINOv2
alone or a custom backbone, ``pca_dim=None``) and with an adapter (its descriptor is a function
of one image's maps), an image's descriptor is the same in every pair it belongs to. An
evaluation matches each image in many pairs (SPair-71k: 13.6 pair sides per image), so the
matcher keeps these descriptors, and their per-cell L2 normalisation that matching uses, in a
:class:`DescriptorMemo` instead of rebuilding them for every pair (pyramid upsampling,
normalisation and fusion were 44% of a cached pair on minireal). The tensors are the ones the
per-pair path computes, so predictions are the same bit for bit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

__all__ = ["DescriptorMemo", "per_image", "reusable_key"]


class DescriptorMemo:
    """An in-memory LRU of per-image tensors (descriptors, their unit versions), bounded by
    entries (``items``) and, optionally, by bytes (``max_bytes``; ``None``: no byte bound).
    ``items=0`` keeps nothing (every request is computed)."""

    def __init__(self, items: int = 16, max_bytes: int | None = None) -> None:
        self.items = max(0, int(items))
        self.max_bytes = None if max_bytes is None else max(0, int(max_bytes))
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._held = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """Bytes of the tensors held now."""
        return self._held

    def get_or_make(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The tensor kept under ``key``, else ``make()`` (kept when it fits the bounds)."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        value = make()
        self.put(key, value)
        return value

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        """Keep ``value`` under ``key``; the least recently used entries leave first. A tensor
        larger than ``max_bytes`` on its own is not kept."""
        size = value.numel() * value.element_size()
        if self.items == 0 or (self.max_bytes is not None and size > self.max_bytes):
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._held -= old.numel() * old.element_size()
        self._entries[key] = value
        self._held += size
        while len(self._entries) > self.items or (
            self.max_bytes is not None and self._held > self.max_bytes
        ):
            _, gone = self._entries.popitem(last=False)
            self._held -= gone.numel() * gone.element_size()

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._held = 0


def reusable_key(matcher, sources: tuple[str, ...], weights: tuple[float, ...]) -> tuple | None:
    """What identifies an image's fused descriptor under ``matcher`` and fusion ``weights``
    when it does not depend on the pair (see the module docstring), else ``None``: no
    extractor with a non-zero weight is co-PCA reduced, or an adapter the matcher opened from a
    name or path (its weights' SHA-256 recorded; a module passed in may be trained in place, so
    it is never reused) runs in eval mode. ``sources`` are the feature-cache keys of the
    image's maps (one per extractor); empty (maps of unknown origin): ``None``."""
    if not sources:
        return None
    adapter = matcher.adapter
    if adapter is not None:
        record = matcher.adapter_record or {}
        if record.get("sha256") is None or adapter.training:
            return None
        # in-place changes (load_state_dict, most optimisers) bump a tensor's version
        version = sum(t._version for t in (*adapter.parameters(), *adapter.buffers()))
        what: tuple = ("adapter", record["sha256"], version)
    else:
        reduced = any(e.reduce for e, w in zip(matcher.extractors, weights, strict=True) if w != 0)
        if matcher.fusion == "copca" and matcher.pca_dim and reduced:
            return None  # co-PCA ties the descriptor to its pair
        what = ("fusion", matcher.fusion, weights)
    return (sources, what, str(matcher.device))


def per_image(
    matcher, images, weights: tuple[float, ...], kind: str, make: Callable
) -> list[torch.Tensor] | None:
    """``kind`` (``"descriptor"``, ``"unit"``) of every image of ``images`` (``ImageFeatures``)
    from ``matcher.reuse``, ``make(features)`` on a miss; ``None`` when any of them is tied to
    its pair (:func:`reusable_key`)."""
    keys = [reusable_key(matcher, f.sources, weights) for f in images]
    if any(k is None for k in keys):
        return None
    return [
        matcher.reuse.get_or_make((f.key, kind, *k), lambda f=f: make(f))
        for f, k in zip(images, keys, strict=True)
    ]
