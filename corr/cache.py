"""Per-image feature cache keyed by image content and extractor configuration.

Layout on disk: ``{root}/{config_key}/config.json`` (the extractor configuration the key stands
for) and ``{root}/{config_key}/{image_key[:2]}/{image_key}.safetensors`` holding that image's
feature maps in fp16. Files are written atomically, so an interrupted run never leaves a
half-written entry, and a later run reuses everything already computed. A small in-memory LRU
avoids re-reading images used by consecutive pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from .io import atomic_write_bytes, atomic_write_json


def image_key(image: np.ndarray) -> str:
    """SHA-256 of an ``(H, W, 3)`` uint8 image's shape and pixels (first 32 hex digits)."""
    h = hashlib.sha256()
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:32]


def config_key(config: dict[str, Any]) -> str:
    """Stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Feature maps per (image, extractor configuration); on disk when ``root`` is given."""

    def __init__(self, root: str | Path | None = None, memory_items: int = 4) -> None:
        self.root = Path(root) if root is not None else None
        self.memory_items = max(0, int(memory_items))
        self._memory: OrderedDict[tuple[str, str], dict[str, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, ckey: str, ikey: str) -> Path:
        assert self.root is not None
        return self.root / ckey / ikey[:2] / f"{ikey}.safetensors"

    def get(self, ikey: str, config: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The cached maps ``{name: (C, h, w) float32}`` or None."""
        ckey = config_key(config)
        maps = self._memory.get((ckey, ikey))
        if maps is not None:
            self._memory.move_to_end((ckey, ikey))
            self.hits += 1
            return {k: v.float() for k, v in maps.items()}
        if self.root is not None:
            path = self._path(ckey, ikey)
            if path.is_file():
                try:
                    maps = load_file(str(path))
                except Exception:  # a corrupt entry is recomputed, never trusted
                    maps = None
                if maps is not None:
                    self._remember((ckey, ikey), maps)
                    self.hits += 1
                    return {k: v.float() for k, v in maps.items()}
        self.misses += 1
        return None

    def put(self, ikey: str, config: dict[str, Any], maps: dict[str, torch.Tensor]) -> None:
        """Store ``{name: (C, h, w)}`` maps as fp16."""
        ckey = config_key(config)
        half = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in maps.items()}
        self._remember((ckey, ikey), half)
        if self.root is not None:
            cfg_file = self.root / ckey / "config.json"
            if not cfg_file.exists():
                atomic_write_json(cfg_file, config)
            atomic_write_bytes(self._path(ckey, ikey), save(half))

    def _remember(self, key: tuple[str, str], maps: dict[str, torch.Tensor]) -> None:
        if self.memory_items == 0:
            return
        self._memory[key] = maps
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
