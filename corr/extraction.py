"""Batched feature extraction: DataLoader workers decode and letterbox, the models run batches.

The functional core of :meth:`corr.Matcher.extract`. For every image (a path or an array,
optionally mirrored) that the cache lacks:

1. a ``torch.utils.data.DataLoader`` worker decodes it, mirrors it if asked, hashes its pixels
   (the cache key) and letterboxes it once per extractor input size (uint8, pinned when the
   device is CUDA);
2. the main thread copies each batch to the device (``non_blocking``) and runs it through every
   extractor; a batch that runs out of GPU memory is split in halves, down to one image, before
   a clear error is raised;
3. a writer thread stores the maps (fp16) in the cache and records the file in the cache's path
   index, so the GPU never waits for the disk.

Images whose features are all cached are recognised through the path index and skipped before
any decode. In a cache several processes share, each entry is claimed before it is computed
(:meth:`~corr.cache.FeatureCache.claim`); one another running process claimed is skipped and
waited for at the end (or computed here if that process died), so each image is extracted once. A file that cannot be read is reported by name (:class:`BadImageError`), or, with
``skip_bad``, listed in the report while the rest of its batch goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .cache import FeatureCache, image_key
from .extractors import Extractor
from .geometry import make_frame
from .io import ImageLike, load_image

log = logging.getLogger("corr")

__all__ = ["ImageItem", "BadImageError", "ExtractReport", "extract_features"]


@dataclass(frozen=True)
class ImageItem:
    """One image to extract: a path or an array, the category of a ``{category}`` prompt, and
    whether to use its horizontal mirror."""

    image: ImageLike
    category: str | None = None
    mirrored: bool = False

    @property
    def name(self) -> str:
        base = str(self.image) if isinstance(self.image, (str, os.PathLike)) else "<array>"
        return base + (" (mirrored)" if self.mirrored else "")


class BadImageError(ValueError):
    """An image could not be read; the message names it."""


@dataclass
class ExtractReport:
    """What :func:`extract_features` did (counts of unique images)."""

    n_images: int = 0
    cached: int = 0  # skipped: every extractor's features were already in the cache
    computed: int = 0
    by_others: int = 0  # written by another process sharing the cache (claimed by it)
    bad: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    batch_size: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_images": self.n_images,
            "cached": self.cached,
            "computed": self.computed,
            "by_others": self.by_others,
            "bad": list(self.bad),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.computed / self.seconds, 3) if self.seconds else None,
            "batch_size": self.batch_size,
        }


class _Images(Dataset):
    """Decode, mirror, hash and letterbox one image per item (runs in DataLoader workers)."""

    def __init__(
        self,
        items: Sequence[ImageItem],
        frames: Sequence[tuple[int, str]],
        resize: str,
        exif_transpose: bool = False,
    ):
        self.items = list(items)
        self.frames = list(frames)
        self.resize = resize
        self.exif_transpose = exif_transpose

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        try:
            arr = load_image(item.image, name=item.name, exif_transpose=self.exif_transpose)
        except (OSError, ValueError) as err:
            return {"index": i, "error": str(err)}
        if item.mirrored:
            arr = np.ascontiguousarray(arr[:, ::-1])
        h, w = arr.shape[:2]
        pixels = [
            torch.from_numpy(make_frame(w, h, size, self.resize).apply(arr, resample)).permute(
                2, 0, 1
            )
            for size, resample in self.frames
        ]
        return {"index": i, "key": image_key(arr), "width": w, "height": h, "pixels": pixels}


def _collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    good = [b for b in batch if "error" not in b]
    pixels = (
        [torch.stack([b["pixels"][e] for b in good]) for e in range(len(good[0]["pixels"]))]
        if good
        else []
    )
    meta = [{k: v for k, v in b.items() if k != "pixels"} for b in batch]
    return {"meta": meta, "pixels": pixels}


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def run_adaptive(
    ext: Extractor, pixels: torch.Tensor, category: str | None
) -> dict[str, torch.Tensor]:
    """``ext(pixels)``; on running out of memory, the batch is split in halves (recursively)."""
    try:
        return ext(pixels, category=category)
    except (RuntimeError, MemoryError) as err:
        if not _is_oom(err):
            raise
    # split outside the except block: the exception's traceback holds the failed pass's frames,
    # and so its activations, which must be freed before the halves run
    if pixels.device.type == "cuda":
        torch.cuda.empty_cache()
    n = pixels.shape[0]
    if n == 1:
        free = ""
        if pixels.device.type == "cuda":
            f, t = torch.cuda.mem_get_info(pixels.device)
            free = f" ({f / 2**30:.1f} of {t / 2**30:.1f} GiB free on {pixels.device})"
        raise MemoryError(
            f"{getattr(ext, 'name', type(ext).__name__)}: one {tuple(pixels.shape[-2:])} image "
            f"does not fit in memory{free}; use dtype bf16/fp16, a smaller input size, "
            "tiled=False, or another device"
        )
    log.warning("out of memory at batch %d: splitting it in halves", n)
    a = run_adaptive(ext, pixels[: n // 2], category)
    b = run_adaptive(ext, pixels[n // 2 :], category)
    return {k: torch.cat([a[k], b[k]]) for k in a}


def extract_features(
    extractors: Sequence[Extractor],
    config_of: Callable[[Extractor, str | None], dict[str, Any]],
    cache: FeatureCache,
    items: Sequence[ImageItem],
    *,
    device: torch.device,
    resize: str = "letterbox",
    batch_size: int = 1,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    exif_transpose: bool = False,
) -> ExtractReport:
    """Fill ``cache`` with every extractor's features of ``items`` (see the module docstring).

    ``config_of(ext, category)`` is the cache configuration of an extractor for an image of
    that category. Items are grouped by category so that a batch shares one prompt.
    ``exif_transpose`` applies files' EXIF orientation (see :func:`corr.io.load_image`).
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(
            f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}"
        )
    t0 = time.perf_counter()
    unique = _unique(items)
    report = ExtractReport(n_images=len(unique), batch_size=batch_size)
    todo: list[ImageItem] = []
    for item in unique:
        found = (
            cache.lookup_path(item.image, item.mirrored, exif_transpose)
            if isinstance(item.image, (str, os.PathLike))
            else None
        )
        if found and all(cache.has(found[0], config_of(e, item.category)) for e in extractors):
            report.cached += 1
        else:
            todo.append(item)
    todo.sort(key=lambda it: (it.category is None, it.category or ""))
    frames = [(e.input_size, e.resample) for e in extractors]
    pin = device.type == "cuda"
    bar = tqdm(total=len(todo), desc="extract", unit="img", disable=not progress or not todo)
    pending: list[Future] = []
    others: dict[int, tuple[ImageItem, list]] = {}  # id(item) -> entries other processes claimed
    with ExitStack() as stack:
        stack.callback(cache.release_claims)  # runs after the writer below has finished
        writer = stack.enter_context(
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="corr-cache-writer")
        )
        start = 0
        while start < len(todo):
            # one DataLoader per run of equal categories: a batch shares one prompt
            cat = todo[start].category
            end = start
            while end < len(todo) and todo[end].category == cat:
                end += 1
            group = todo[start:end]
            loader = DataLoader(
                _Images(group, frames, resize, exif_transpose),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=_collate,
                pin_memory=pin,
            )
            for batch in loader:
                _run_batch(
                    batch,
                    group,
                    extractors,
                    config_of,
                    cache,
                    writer,
                    pending,
                    report,
                    skip_bad,
                    exif_transpose,
                    others,
                )
                bar.update(len(batch["meta"]))
                # bound the maps waiting for the disk
                while len(pending) > 2 * batch_size + 2:
                    pending.pop(0).result()
            start = end
        for f in pending:
            f.result()
    bar.close()
    if others:  # a process sharing the cache is writing these: wait, or do those it gave up
        redo = cache.wait_for_entries({k: entries for k, (_, entries) in others.items()})
        report.by_others += len(others) - len(redo)
        if redo:
            again = extract_features(
                extractors, config_of, cache, [others[k][0] for k in redo], device=device,
                resize=resize, batch_size=batch_size, num_workers=num_workers,
                skip_bad=skip_bad, progress=progress, exif_transpose=exif_transpose,
            )  # fmt: skip
            report.computed += again.computed
            report.by_others += again.by_others
            report.bad += again.bad
    report.seconds = time.perf_counter() - t0
    return report


def _unique(items: Sequence[ImageItem]) -> list[ImageItem]:
    """Items in order, repeats dropped: equal paths are one image, an array is itself."""
    seen: set = set()
    out = []
    for it in items:
        image = str(it.image) if isinstance(it.image, (str, os.PathLike)) else id(it.image)
        key = (image, it.category, it.mirrored)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def _run_batch(
    batch,
    group,
    extractors,
    config_of,
    cache,
    writer,
    pending,
    report,
    skip_bad,
    exif_transpose=False,
    others=None,
):
    meta = batch["meta"]
    good = [m for m in meta if "error" not in m]
    for m in meta:
        if "error" in m:
            item = group[m["index"]]
            if not skip_bad:
                raise BadImageError(  # load_image's message starts with the image's name
                    f"{m['error']}\nFix or remove the file, or pass --skip-bad "
                    "(skip_bad=True) to record it as skipped."
                )
            report.bad.append({"image": item.name, "reason": m["error"]})
    if not good:
        return
    category = group[good[0]["index"]].category
    ours: set[int] = set()  # rows of ``good`` this process computes something of
    deferred: set[int] = set()  # rows with an entry another process is computing
    for e, ext in enumerate(extractors):
        cfg = config_of(ext, category)
        need = [j for j, m in enumerate(good) if not cache.has(m["key"], cfg)]
        if others is not None:  # a shared cache: skip what another process is computing now
            theirs = [j for j in need if not cache.claim(good[j]["key"], cfg)]
            for j in theirs:
                item = group[good[j]["index"]]
                others.setdefault(id(item), (item, []))[1].append((good[j]["key"], cfg))
            deferred.update(theirs)
            need = [j for j in need if j not in theirs]
            ours.update(need)
        if not need:
            continue
        pixels = batch["pixels"][e][need] if len(need) < len(good) else batch["pixels"][e]
        # to the extractor's own device (two extractors may sit on two GPUs)
        pixels = pixels.to(ext.device, non_blocking=True).float().div_(255.0)
        out = run_adaptive(ext, pixels, category)
        for row, j in enumerate(need):
            maps = {k: v[row].detach() for k, v in out.items()}
            pending.append(writer.submit(cache.put, good[j]["key"], cfg, maps))
    for m in good:
        item = group[m["index"]]
        if isinstance(item.image, (str, os.PathLike)):
            pending.append(
                writer.submit(
                    cache.remember_path,
                    item.image,
                    item.mirrored,
                    m["key"],
                    m["width"],
                    m["height"],
                    exif_transpose,
                )
            )
    report.computed += sum(1 for j in range(len(good)) if j in ours or j not in deferred)
