"""Per-image feature cache keyed by image content and extractor configuration.

Layout on disk: ``{root}/{config_key}/config.json`` (the extractor configuration the key stands
for) and ``{root}/{config_key}/{image_key[:2]}/{image_key}.safetensors`` holding that image's
feature maps in fp16. Files are written atomically, so an interrupted run never leaves a
half-written entry (the temporary file of a killed write is removed when a cache is next
opened on that folder), and a later run reuses everything already computed. Each entry records
what made it (format, configuration key, image key, the maps' shapes and dtype, a CRC-32 of
their bytes) and is verified on read (its bytes once per cache object: an entry this cache
wrote or verified, unchanged since, is not scanned again), its shapes also against ``{config_key}/shapes.json`` (the
shapes of the configuration's first entry: every image of one configuration has maps of the same
shapes); a bad entry is discarded with a warning and recomputed, and without ``shapes.json`` an
entry cannot be verified and is recomputed too. ``shapes.json`` is written before a
configuration's first entry. Identical features give identical files (the safetensors header is
written here, in sorted order), whichever process writes them. An in-memory LRU (bounded by
entries and, optionally, by bytes) avoids re-reading images used by nearby pairs.

**Sharing a cache between processes** (two evaluations with one ``--cache-dir``): before a
process computes an entry it claims it (``.{image_key}.safetensors.claim`` beside it, created
exclusively, naming its pid and host; :func:`corr.io.claim_file`); another process skips an
entry claimed by a running process and waits for it at the end of its extraction
(:meth:`FeatureCache.wait_for_entries`), so each image is extracted once. The claim of a
process that died is taken over.

**Path index** (``{root}/paths/{k[:2]}/{k}.json``, ``k`` a hash of a file's absolute path,
size, modification time, whether it is mirrored and whether EXIF orientation was applied): the image key and size of a file already
decoded once, so that cached images are recognised without decoding them again. Entries are
written atomically; a changed file (size or mtime) simply misses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from .io import (
    atomic_write_bytes,
    atomic_write_json,
    claim_file,
    claim_owner,
    release_claim,
    remove_stale_temporaries,
)

log = logging.getLogger("corr")
ENTRY_FORMAT = "corr-features-2"  # 2: records the maps' shapes, dtype and CRC-32


def image_key(image: np.ndarray) -> str:
    """SHA-256 of an ``(H, W, 3)`` uint8 image's shape and pixels (first 32 hex digits)."""
    h = hashlib.sha256()
    h.update(str(image.shape).encode())
    h.update(memoryview(np.ascontiguousarray(image)).cast("B"))  # no copy of the pixels
    return h.hexdigest()[:32]


def config_key(config: dict[str, Any]) -> str:
    """Stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_key(
    path: str | os.PathLike,
    mirrored: bool = False,
    exif: bool = False,
    resolved: dict[tuple[str, str], str] | None = None,
) -> str | None:
    """Hash of a file's absolute path, size, mtime, mirror flag and (when on) EXIF flag (None if
    it is not a file). ``resolved``: a memo of absolute paths by (working folder, path) that
    the caller keeps (the file is still looked at every time: a changed file gets a new key)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if resolved is None:
        absolute = str(Path(path).resolve())
    else:
        where = (os.getcwd(), os.fspath(path))
        absolute = resolved.get(where)
        if absolute is None:
            absolute = resolved[where] = str(Path(path).resolve())
    text = f"{absolute}|{st.st_size}|{st.st_mtime_ns}|{int(bool(mirrored))}"
    if exif:  # decoded with its EXIF orientation applied: other pixels (keys without it unchanged)
        text += "|exif"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FeatureCache:
    """Feature maps per (image, extractor configuration); on disk when ``root`` is given.

    ``memory_items`` / ``memory_bytes`` bound the in-memory LRU (fp16 maps); ``put`` may be
    called from a writer thread while the main thread reads. Opening a cache on an existing
    folder removes the temporary files that killed writes left in it.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        memory_items: int = 4,
        memory_bytes: int | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.memory_items = max(0, int(memory_items))
        self.memory_bytes = None if memory_bytes is None else max(0, int(memory_bytes))
        self._memory: OrderedDict[tuple[str, str], dict[str, torch.Tensor]] = OrderedDict()
        self._held = 0
        self._lock = threading.RLock()
        self._paths: dict[str, tuple[str, int, int]] = {}
        self._resolved: dict[tuple[str, str], str] = {}  # absolute paths, for path_key
        self._shapes: dict[str, str] = {}  # config key -> the shapes of its entries (JSON)
        self.write_configs = True  # off on all but one of several processes sharing the cache
        self._claims: set[Path] = set()  # entries this cache claimed and has not yet written
        # entries verified (or written) by this cache: path -> (inode, size, mtime_ns) then
        self._verified: dict[Path, tuple[int, int, int]] = {}
        self.hits = 0
        self.misses = 0
        if self.root is not None:
            remove_stale_temporaries(self.root)

    # ---- path index ---------------------------------------------------------------------------
    def lookup_path(
        self, path: str | os.PathLike, mirrored: bool = False, exif: bool = False
    ) -> tuple[str, int, int] | None:
        """``(image key, width, height)`` of a file decoded before (same size and mtime, same
        mirror and EXIF flags), or None."""
        pk = path_key(path, mirrored, exif, self._resolved)
        if pk is None:
            return None
        with self._lock:
            if pk in self._paths:
                return self._paths[pk]
        if self.root is None:
            return None
        f = self.root / "paths" / pk[:2] / f"{pk}.json"
        try:
            data = json.loads(f.read_text())
            found = (str(data["key"]), int(data["width"]), int(data["height"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        with self._lock:
            self._paths[pk] = found
        return found

    def remember_path(
        self,
        path: str | os.PathLike,
        mirrored: bool,
        key: str,
        width: int,
        height: int,
        exif: bool = False,
    ) -> None:
        """Record that ``path`` (mirrored or not, EXIF applied or not) decodes to the image
        ``key`` of that size."""
        pk = path_key(path, mirrored, exif, self._resolved)
        if pk is None:
            return
        with self._lock:
            known = self._paths.get(pk)
            self._paths[pk] = (key, int(width), int(height))
        if self.root is not None and known is None:
            f = self.root / "paths" / pk[:2] / f"{pk}.json"
            if not f.exists():
                atomic_write_json(f, {"key": key, "width": int(width), "height": int(height)})

    def has(self, ikey: str, config: dict[str, Any]) -> bool:
        """Whether the maps of (image, config) are cached, without loading them."""
        ckey = config_key(config)
        with self._lock:
            if (ckey, ikey) in self._memory:
                return True
        return self.root is not None and self.entry_path(ckey, ikey).is_file()

    def entry_path(self, ckey: str, ikey: str) -> Path:
        """The file of image ``ikey``'s maps under configuration key ``ckey`` (on disk)."""
        assert self.root is not None
        return self.root / ckey / ikey[:2] / f"{ikey}.safetensors"

    def get(self, ikey: str, config: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The cached maps ``{name: (C, h, w) float32}`` or None."""
        ckey = config_key(config)
        with self._lock:
            maps = self._memory.get((ckey, ikey))
            if maps is not None:
                self._memory.move_to_end((ckey, ikey))
                self.hits += 1
                return {k: v.float() for k, v in maps.items()}
        if self.root is not None:
            path = self.entry_path(ckey, ikey)
            shapes = self._expected_shapes(ckey)
            if path.is_file() and shapes is None:
                log.warning(
                    "feature cache entry %s not used: %s is missing, so its shapes cannot be "
                    "verified; it is recomputed",
                    path,
                    self.root / ckey / "shapes.json",
                )
            elif path.is_file():
                stamp = _stamp(path)
                with self._lock:
                    known = stamp is not None and self._verified.get(path) == stamp
                maps = _read_entry(path, ckey, ikey, shapes, verify=not known)
                if maps is not None:
                    with self._lock:
                        if stamp is not None:
                            self._verified[path] = stamp
                    with self._lock:
                        self._remember((ckey, ikey), maps)
                        self.hits += 1
                    return {k: v.float() for k, v in maps.items()}
        with self._lock:
            self.misses += 1
        return None

    def put(self, ikey: str, config: dict[str, Any], maps: dict[str, torch.Tensor]) -> None:
        """Store ``{name: (C, h, w)}`` maps as fp16."""
        ckey = config_key(config)
        half = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in maps.items()}
        with self._lock:
            self._remember((ckey, ikey), half)
        if self.root is not None:
            if self.write_configs:
                self.write_config(config)
            meta = {
                "format": ENTRY_FORMAT,
                "config_key": ckey,
                "image_key": ikey,
                "shapes": json.dumps({k: list(v.shape) for k, v in sorted(half.items())}),
                "dtype": "float16",
                "crc32": str(maps_crc32(half)),
            }
            if self._expected_shapes(ckey) is None:  # the first entry of this configuration:
                # its shapes first, so that no entry is ever on disk without them
                atomic_write_bytes(self.root / ckey / "shapes.json", meta["shapes"].encode())
                with self._lock:
                    self._shapes[ckey] = meta["shapes"]
            path = self.entry_path(ckey, ikey)
            atomic_write_bytes(path, safetensors_bytes(half, meta))
            stamp = _stamp(path)
            with self._lock:
                if stamp is not None:
                    self._verified[path] = stamp
                held = path in self._claims
                self._claims.discard(path)
            if held:
                release_claim(path)

    # ---- claims: one process computes each entry of a shared cache ----------------------------
    def claim(self, ikey: str, config: dict[str, Any]) -> bool:
        """Claim the entry (image, config) before computing it: True when this cache may compute
        it (it holds the claim, or the cache is in memory only); False while another running
        process holds it (its features will appear: :meth:`wait_for_entries`). :meth:`put`
        releases the claim once the entry is written; :meth:`release_claims` the rest."""
        if self.root is None:
            return True
        path = self.entry_path(config_key(config), ikey)
        if not claim_file(path):
            return False
        with self._lock:
            self._claims.add(path)
        return True

    def release_claims(self) -> None:
        """Release every claim this cache still holds (entries it did not write)."""
        with self._lock:
            held, self._claims = self._claims, set()
        for path in held:
            release_claim(path)

    def wait_for_entries(
        self,
        pending: Mapping[Hashable, Sequence[tuple[str, dict[str, Any]]]],
        poll: float = 0.2,
    ) -> list[Hashable]:
        """Wait for entries other processes claimed: ``pending`` maps an item (any key) to its
        ``(image key, config)`` entries. Returns the items with an entry that is still missing
        while no running process claims it any more (its owner died or gave up): the caller
        computes those itself. Polls every ``poll`` seconds; says once that it waits."""
        todo = {item: list(entries) for item, entries in pending.items()}
        orphaned: list[Hashable] = []
        said = False
        while todo:
            for item, entries in list(todo.items()):
                missing = [(k, c) for k, c in entries if not self.has(k, c)]
                owners = [claim_owner(self.entry_path(config_key(c), k)) for k, c in missing]
                if not missing:
                    del todo[item]
                elif None in owners:
                    orphaned.append(item)
                    del todo[item]
                elif not said:
                    log.warning(
                        "%d image(s) are being extracted by another process (%s) into %s: "
                        "waiting for them",
                        len(todo),
                        owners[0],
                        self.root,
                    )
                    said = True
            if todo:
                time.sleep(poll)
        return orphaned

    def _expected_shapes(self, ckey: str) -> str | None:
        """The shapes (JSON) every entry of a configuration has, from ``shapes.json``."""
        with self._lock:
            if ckey in self._shapes:
                return self._shapes[ckey]
        if self.root is None:
            return None
        try:
            text = (self.root / ckey / "shapes.json").read_text()
        except OSError:
            return None
        with self._lock:
            self._shapes[ckey] = text
        return text

    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``{root}/{config_key}/config.json`` (what the key stands for) if missing."""
        if self.root is None:
            return
        cfg_file = self.root / config_key(config) / "config.json"
        if not cfg_file.exists():
            atomic_write_json(cfg_file, config)

    def _remember(self, key: tuple[str, str], maps: dict[str, torch.Tensor]) -> None:
        if self.memory_items == 0:
            return
        if key in self._memory:
            self._held -= _nbytes(self._memory.pop(key))
        self._memory[key] = maps
        self._held += _nbytes(maps)
        while len(self._memory) > self.memory_items or (
            self.memory_bytes is not None
            and self._held > self.memory_bytes
            and len(self._memory) > 1
        ):
            _, old = self._memory.popitem(last=False)
            self._held -= _nbytes(old)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """``(inode, size, mtime_ns)`` of a file (None when it cannot be read): an entry verified
    once is not checked again while its stamp stays the same."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_entry(
    path: Path, ckey: str, ikey: str, shapes: str | None = None, verify: bool = True
) -> dict[str, torch.Tensor] | None:
    """One cache entry, verified: written by this format for this (configuration, image), fp16
    ``(C, h, w)`` maps of the recorded shapes (and of ``shapes``, those of the configuration's
    entries, when known) and CRC-32, with finite values. Anything else is discarded with a
    warning (and then recomputed by the caller), never trusted. ``verify=False`` (an entry this
    cache verified or wrote before, unchanged since: once per run) skips the CRC-32 and the
    finite-values scan of the bytes; the record and the shapes are still checked."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            maps = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        problem = f"unreadable ({err})"
    else:
        if meta.get("format") != ENTRY_FORMAT:
            problem = "written by another version (no record of what made it)"
        elif (meta.get("config_key"), meta.get("image_key")) != (ckey, ikey):
            problem = "it records another image or configuration"
        elif not maps or any(t.dtype != torch.float16 or t.ndim != 3 for t in maps.values()):
            problem = "its maps are not fp16 (C, h, w) tensors"
        elif meta.get("dtype") != "float16" or meta.get("shapes") != json.dumps(
            {k: list(v.shape) for k, v in sorted(maps.items())}
        ):
            problem = "its maps do not have the recorded names, shapes or dtype"
        elif shapes is not None and meta["shapes"] != shapes:
            problem = f"its maps {meta['shapes']} differ from this configuration's {shapes}"
        elif verify and meta.get("crc32") != str(maps_crc32(maps)):
            problem = "its bytes do not match the recorded checksum (damaged)"
        # the float32 sum of fp16 values (each <= 65504) cannot overflow: it is finite exactly
        # when every value is (NaN and infinities propagate), at a ninth of isfinite's cost
        elif verify and not all(
            bool(torch.isfinite(t.sum(dtype=torch.float32))) for t in maps.values()
        ):
            problem = "it holds NaN or infinite values"
        else:
            return maps
    log.warning("feature cache entry %s discarded: %s; it is recomputed", path, problem)
    try:
        path.unlink()
    except OSError:
        pass
    return None


def maps_crc32(maps: dict[str, torch.Tensor]) -> int:
    """CRC-32 of the maps' bytes, in name order."""
    crc = 0
    for _, t in sorted(maps.items()):
        crc = zlib.crc32(memoryview(t.contiguous().view(torch.uint8).numpy()), crc)
    return crc


_SAFETENSORS_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}


def safetensors_bytes(maps: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors file of ``maps`` with ``metadata``, byte for byte the same for the same
    input in every process: the header lists the metadata and then the tensors in sorted order
    (safetensors' own writer orders the metadata as a hash map does, differently per process).
    Readable by ``safetensors.safe_open``."""
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name, t in sorted(maps.items()):
        data = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _nbytes(maps: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in maps.values())


class FeatureStore:
    """Read back the features written by ``python -m corr.extract`` (or an evaluation's cache).

    The folder is a :class:`FeatureCache`: ``{config_key}/config.json`` says which extractor
    configuration a key stands for, ``{config_key}/{k[:2]}/{k}.safetensors`` holds one image's
    fp16 maps ``{name: (C, h, w)}`` (``k`` the SHA-256 of its pixels), ``paths/`` indexes files
    already decoded, and ``manifest*.jsonl`` (one per process) lists every extracted file:
    ``{"image": absolute path, "mirrored": bool, "key": k, "width": W, "height": H}``.

    Example::

        store = corr.FeatureStore("features/")
        store.configs()                      # {config_key: extractor configuration}
        maps = store.get("photos/cat1.jpg")  # {name: (C, h, w) float32}, one configuration
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"no feature folder at {self.root}: write one with "
                "`python -m corr.extract --images LIST_OR_FOLDER --out FOLDER`"
            )
        self._cache = FeatureCache(self.root, memory_items=0)
        self._manifest: dict[tuple[str, bool], dict[str, Any]] = {}
        for f in sorted(self.root.glob("manifest*.jsonl")):
            for line in f.read_text().splitlines():
                try:
                    e = json.loads(line)
                    self._manifest[(e["image"], bool(e["mirrored"]))] = e
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line of a process that was stopped

    def configs(self) -> dict[str, dict[str, Any]]:
        """``{config_key: extractor configuration}`` of every configuration in the folder."""
        return {
            p.parent.name: json.loads(p.read_text())
            for p in sorted(self.root.glob("*/config.json"))
        }

    def images(self) -> list[dict[str, Any]]:
        """The manifest entries: which files were extracted, with their key and size."""
        return list(self._manifest.values())

    def key_of(self, image: str | os.PathLike, mirrored: bool = False) -> tuple[str, int, int]:
        """``(key, width, height)`` of an extracted file."""
        entry = self._manifest.get((str(Path(image).resolve()), bool(mirrored)))
        if entry is not None:
            return entry["key"], int(entry["width"]), int(entry["height"])
        found = self._cache.lookup_path(image, mirrored)
        if found is None:
            raise KeyError(f"{image}{' (mirrored)' if mirrored else ''} is not in {self.root}")
        return found

    def get(
        self,
        image: str | os.PathLike,
        mirrored: bool = False,
        config: str | dict[str, Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The maps ``{name: (C, h, w) float32}`` of an extracted file for one configuration:
        ``config`` is a key of :meth:`configs` or a configuration (``None``: the only one)."""
        key = self.key_of(image, mirrored)[0]
        configs = self.configs()
        if config is None:
            if len(configs) != 1:
                raise ValueError(
                    f"{self.root} holds {len(configs)} extractor configurations "
                    f"({', '.join(configs) or 'none'}): pass config= (one of these keys)"
                )
            ckey = next(iter(configs))
        else:
            ckey = config if isinstance(config, str) else config_key(config)
        path = self._cache.entry_path(ckey, key)
        if not path.is_file():
            raise KeyError(f"{image}: no features of configuration {ckey} in {self.root}")
        maps = _read_entry(path, ckey, key, self._cache._expected_shapes(ckey))
        if maps is None:
            raise KeyError(
                f"{image}: its features in {path} failed verification and were discarded; "
                "extract them again (`python -m corr.extract`)"
            )
        return {k: v.float() for k, v in maps.items()}
