"""Training pairs read from the feature cache: maps, keypoints in the matching frame, thresholds.

Features are never computed here: the training run extracts every image once (and the mirrored
images for the flip terms) into the on-disk feature cache, and :class:`FeaturePairs` reads one
pair's entries per item (safetensors files, fp16 on disk, opened lazily), so a data set of any
size trains without holding its features in memory; a ``DataLoader`` with workers reads ahead.

Keypoints follow ``pck_train.py`` (Junyi42/GeoAware-SC @99fd6b6): letterboxed into the frame
the descriptors' grid covers (``preprocess_kps_pad``; 840 for SD+DINO), invisible rows zeroed,
as ``(K, 3)`` ``(x, y, visible)``. A pair's noise thresholds are the longer side of each image's
box in frame pixels, in grid cells (``BBOX_THRE``). A record without a box (PF-Pascal) gets the
frame size, *unscaled*, as its threshold "in cells", as the reference does (its
``all_thresholds`` default ``ANNO_SIZE`` is not rescaled): the flow noise is then wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..cache import FeatureCache
from ..datasets import PairRecord
from ..keypoint_tables import flip_permutation
from .augment import threshold_cells

__all__ = [
    "FeaturePairs",
    "TrainingPair",
    "frame_keypoints",
    "pair_threshold",
    "keep_item",
    "MissingFeaturesError",
]

Maps = list[dict[str, torch.Tensor]]


class MissingFeaturesError(RuntimeError):
    """An image's features are not in the cache (the extraction stage did not run for it)."""


@dataclass
class TrainingPair:
    """One pair as the loss takes it. ``src``/``tgt`` (and the mirrored images' ``src_flip`` /
    ``tgt_flip``, or ``None``): one ``{name: (C, h, w)}`` dict per extractor; ``kps1``/``kps2``
    ``(K, 3)`` float32 ``(x, y, visible)`` in the frame; ``threshold1``/``threshold2`` in grid
    cells; ``flip_perm``: the category's flip permutation (or ``None``)."""

    index: int
    pair_id: str
    src: Maps
    tgt: Maps
    src_flip: Maps | None
    tgt_flip: Maps | None
    kps1: torch.Tensor
    kps2: torch.Tensor
    threshold1: float
    threshold2: float
    flip_perm: np.ndarray | None


def frame_keypoints(
    points: np.ndarray, visible: np.ndarray, frame: Any, arithmetic: str = "exact"
) -> torch.Tensor:
    """Original-pixel keypoints ``(K, 2)`` -> ``(K, 3)`` float32 ``(x, y, visible)`` in the
    matching ``frame`` (a :class:`~corr.geometry.Letterbox`); invisible rows are zeros."""
    pts = np.zeros((len(points), 2))
    vis = np.asarray(visible, dtype=bool)
    if vis.any():
        pts[vis] = frame.to_letterbox(np.asarray(points)[vis], arithmetic=arithmetic)
    out = np.concatenate([pts, vis[:, None].astype(np.float64)], axis=1)
    return torch.from_numpy(out.astype(np.float32))


def pair_threshold(record: PairRecord, which: str, frame: Any, size: int, grid: int) -> float:
    """The noise threshold of one image of a pair in grid cells: its box's longer side in frame
    pixels times ``grid / size``; without a box the frame size unscaled (the reference's)."""
    box = record.src_bbox if which == "src" else record.tgt_bbox
    if box is None:
        return float(size)
    x1, y1, x2, y2 = box
    return threshold_cells(max(x2 - x1, y2 - y1) * frame.scale, size, grid)


class FeaturePairs(Dataset):
    """Training pairs whose features are in ``cache_dir``.

    Args:
        records: the pairs (``corr.datasets.load_pairs``).
        cache_dir: the feature cache the training run extracted into.
        configs: ``configs(category) -> [extractor cache config, ...]`` (see
            :meth:`corr.Matcher.cache_config`).
        frame: ``frame(width, height)`` -> the matching frame (:meth:`corr.Matcher.matching_frame`).
        size, grid: the frame's side and the descriptor grid (for the thresholds).
        flip_tables: ``{table category: flip groups}`` when the recipe has flip terms, else
            ``None`` (the mirrored images are then not read).
        arithmetic: keypoint -> frame arithmetic (the matcher's).
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        cache_dir: str | Path,
        configs,
        frame,
        size: int,
        grid: int,
        flip_tables: dict[str, Any] | None = None,
        arithmetic: str = "exact",
        categories=None,
    ) -> None:
        self.records = list(records)
        self.cache_dir = Path(cache_dir)
        self.configs = configs
        self.frame = frame
        self.size, self.grid = int(size), int(grid)
        self.flip_tables = flip_tables
        self.arithmetic = arithmetic
        self.categories = categories or (lambda rec: (rec.category, rec.category))
        self._cache: FeatureCache | None = None  # opened in each worker on first use

    def __len__(self) -> int:
        return len(self.records)

    def _maps(self, path: Path, category: str | None, mirrored: bool) -> Maps:
        if self._cache is None:
            self._cache = FeatureCache(self.cache_dir, memory_items=0)
        found = self._cache.lookup_path(path, mirrored)
        maps = None
        if found is not None:
            maps = [self._cache.get(found[0], cfg) for cfg in self.configs(category)]
        if found is None or any(m is None for m in maps):
            raise MissingFeaturesError(
                f"{path}{' (mirrored)' if mirrored else ''}: no features in {self.cache_dir}; "
                "the training run extracts every image first: run it again (it resumes)"
            )
        return maps

    def __getitem__(self, index: int) -> TrainingPair:
        rec = self.records[index]
        cat_s, cat_t = self.categories(rec)
        (ws, hs), (wt, ht) = rec.src_size, rec.tgt_size
        frame_s, frame_t = self.frame(ws, hs), self.frame(wt, ht)
        perm = None
        flips = (None, None)
        if self.flip_tables is not None:
            groups = self.flip_tables[rec.table_category]
            perm = flip_permutation(groups, rec.num_keypoints)
            flips = (
                self._maps(rec.src_image, cat_s, True),
                self._maps(rec.tgt_image, cat_t, True),
            )
        return TrainingPair(
            index=index,
            pair_id=rec.pair_id,
            src=self._maps(rec.src_image, cat_s, False),
            tgt=self._maps(rec.tgt_image, cat_t, False),
            src_flip=flips[0],
            tgt_flip=flips[1],
            kps1=frame_keypoints(rec.src_kps, rec.src_vis, frame_s, self.arithmetic),
            kps2=frame_keypoints(rec.tgt_kps, rec.tgt_vis, frame_t, self.arithmetic),
            threshold1=pair_threshold(rec, "src", frame_s, self.size, self.grid),
            threshold2=pair_threshold(rec, "tgt", frame_t, self.size, self.grid),
            flip_perm=perm,
        )


def keep_item(item: TrainingPair) -> TrainingPair:
    """The ``DataLoader`` collate function: one pair per step, as it is."""
    return item
