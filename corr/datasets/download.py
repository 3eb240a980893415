"""Download, verify and unpack the benchmarks: ``python -m corr.datasets download NAME --root DIR``.

The recipe per data set: what each is made of lives in ``corr/datasets/sources.json`` (the
published URLs, where each URL is published, the known SHA-256 sums, and how each file is
unpacked; read by :mod:`corr.datasets.obtain`). For a data set ``NAME`` with folder ``F``
(``SPair-71k``, ``PF-Pascal``, ``AP-10K``):

1. Each file is fetched into ``DIR/.downloads/{file}.part`` with a progress bar (bytes, speed);
   an interrupted download resumes there with an HTTP ``Range`` request, and a dropped
   connection is retried (and resumed) a few times (:func:`corr.datasets.fetching.fetch`).
   ``--from`` takes a file you already have, a folder holding the files, a mirror URL of one
   file, or a mirror base URL ending in ``/``.
2. The SHA-256 of each file is checked against the recorded sum; a file without a recorded sum
   is accepted and its sum printed (so it can be recorded).
3. Archives are unpacked into ``DIR/.downloads/unpack-F/F``, refusing any member whose path
   leaves that folder (absolute paths, ``..``, links pointing outside;
   :func:`corr.datasets.archives.unpack_archive`), then the folder is renamed to ``DIR/F`` in
   one step, with a record ``DIR/F/.corr-download.json`` written before the rename: ``DIR/F``
   exists only when complete. For AP-10K the raw release is unpacked to ``DIR/ap-10k`` and the
   benchmark builder (:func:`corr.datasets.ap10k.build_ap10k`) writes ``DIR/AP-10K`` the same
   way.
4. Re-running on a complete folder does nothing and says so; a folder ``DIR/F`` that has no
   record (unpacked by hand) is never touched.

Only the standard library (urllib, tarfile, zipfile, hashlib) and tqdm are used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fetching
from .archives import CorruptArchiveError, UnsafeArchiveError, unpack_archive
from .fetching import (
    DownloadError,
    Log,
    WriteFailedError,
    disk_message,
    fetch,
    folder_lock,
    sha256_file,
)
from .obtain import PlannedFile, dataset_entry, obtain_file, plan_files, sources

__all__ = [
    "download",
    "bundled_subset",
    "download_hint",
    "fetch",
    "unpack_archive",
    "sha256_file",
    "sources",
    "read_record",
    "DownloadError",
    "UnsafeArchiveError",
    "CorruptArchiveError",
    "WriteFailedError",
    "DownloadResult",
    "RECORD",
    "DOWNLOADS",
]

RECORD = ".corr-download.json"  #: written into a folder once it is complete
DOWNLOADS = ".downloads"  #: under the root: partial downloads, staging folders, the lock


@dataclass
class DownloadResult:
    """What :func:`download` did: ``status`` is ``"done"`` or ``"complete"`` (nothing to do)."""

    dataset: str
    folder: Path
    status: str
    files: list[dict] = field(default_factory=list)


def bundled_subset(dataset: str) -> Path | None:
    """The small real test subset a checkout bundles for ``dataset`` (``tests/data/minireal``:
    8 categories of photos in the SPair-71k and PF-Pascal layouts), or None (an installed
    package, or AP-10K)."""
    folder = dataset_entry(dataset, None)["folder"]
    path = Path(__file__).resolve().parents[2] / "tests" / "data" / "minireal" / folder
    return path if path.is_dir() else None


def download_hint(dataset: str, root: str | Path) -> str:
    """What to do when ``root`` is not ``dataset``'s folder, depending on what is there.

    The download command puts the data set beside the folder named (its parent: where the
    user keeps data), or into ``data/`` when the path points into a test subset (``minireal``:
    a subset is not the benchmark, so the benchmark does not go there). A folder that exists
    also gets the check command that lists what it lacks; in a checkout, the bundled test
    subset is named to try the tools with (said not to be the benchmark).
    """
    entry = dataset_entry(dataset, None)
    root = Path(root)
    folder = entry["folder"]
    subset_path = any(part.lower() == "minireal" for part in root.parts)
    parent = Path("data") if subset_path else root.parent
    lines = [
        f"to download the full {folder}: python -m corr.datasets download {dataset} --root "
        f"{parent} (makes {parent / folder}; pass that as --root)"
    ]
    if root.is_dir():
        lines.append(
            f"to see what this folder lacks: python -m corr.datasets check {dataset} --root {root}"
        )
    subset = bundled_subset(dataset)
    if subset is not None and not root.is_dir():
        try:
            shown = subset.relative_to(Path.cwd())
        except ValueError:
            shown = subset
        lines.append(
            f"to try the tools without it: --root {shown} (minireal, a small subset of real "
            "photos in this layout, bundled for tests; its figures are not benchmark figures)"
        )
    return "\n".join(lines)


def _atomic_json(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path``, fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fetching.write_bytes(f, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def read_record(folder: str | Path) -> dict | None:
    """The download record of a folder (``.corr-download.json``), or None if absent/unreadable."""
    path = Path(folder) / RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------- download


def _stage(downloads: Path, name: str) -> Path:
    staging = downloads / f"unpack-{name}"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted run (we hold the lock)
    staging.mkdir()
    return staging


def _finish(content: Path, target: Path, record: dict) -> None:
    """Write the record into the staged folder, then rename it to ``target`` in one step."""
    try:
        _atomic_json(content / RECORD, record)
    except OSError as err:
        raise WriteFailedError(disk_message(err, content.parent, "writing the record")) from None
    os.rename(content, target)


def _unpack_all(
    dataset: str,
    entry: dict,
    got: list[tuple[PlannedFile, Path]],
    target: Path,
    downloads: Path,
    record: dict,
    progress: bool | None,
    log: Log,
) -> None:
    staging = _stage(downloads, target.name)
    content = staging / target.name
    content.mkdir()
    try:
        for item, path in got:
            to = str(item.spec.get("to") or "")
            if item.spec.get("unpack"):
                log(f"unpacking {item.name} -> {target}")
                unpack_archive(
                    path, content, member=item.spec.get("member"), to=to, progress=progress
                )
            else:
                dest = content / (to or item.name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open(path, "rb") as src, open(dest, "wb") as f:
                        while chunk := src.read(fetching.CHUNK):
                            fetching.write_bytes(f, chunk)
                except OSError as err:
                    raise WriteFailedError(
                        disk_message(err, target.parent, f"copying {item.name}")
                    ) from None
        missing = [r for r in entry.get("required", []) if not (content / r).exists()]
        if missing:
            names = ", ".join(it.name for it, _ in got)
            raise CorruptArchiveError(
                f"{entry['title']}: after unpacking {names}, {missing[0]} is missing (expected "
                f"{', '.join(entry['required'])} in {target.name}/): not the published archive?",
                got[0][1],
            )
        _finish(content, target, record)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _fetch_and_unpack(
    dataset: str,
    entry: dict,
    target: Path,
    root: Path,
    downloads: Path,
    origins: Sequence[str],
    sums: Mapping[str, str] | None,
    *,
    retries: int,
    timeout: float,
    progress: bool | None,
    keep_archives: bool,
    log: Log,
) -> list[dict]:
    items = plan_files(entry, origins, log)
    got: list[tuple[PlannedFile, Path]] = []
    files: list[dict] = []
    for item in items:
        path, info = obtain_file(
            item, dataset, root, downloads, sums,
            retries=retries, timeout=timeout, progress=progress, log=log,
        )  # fmt: skip
        got.append((item, path))
        files.append(info)
    record = {
        "dataset": dataset,
        "title": entry["title"],
        "tool": "corr.datasets.download",
        "record_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
    }
    try:
        _unpack_all(dataset, entry, got, target, downloads, record, progress, log)
    except CorruptArchiveError as err:
        ours = [p for it, p in got if it.path is None and p == err.path]
        if ours:
            ours[0].unlink(missing_ok=True)
            raise DownloadError(f"{err}; the downloaded copy was removed: run the same command to "
                                "download it again") from None  # fmt: skip
        raise DownloadError(
            f"{err} (your file was left as it is; download it again or pass another --from)"
        ) from None
    except UnsafeArchiveError as err:
        raise UnsafeArchiveError(f"{err}; nothing was unpacked into {target}") from None
    except WriteFailedError as err:
        kept = any(it.path is None for it, _ in got)
        suffix = f" (the verified downloads are kept in {downloads})" if kept else ""
        raise WriteFailedError(
            f"{err}; nothing was left in {target}{suffix}: free some space in {root} (or pass "
            "--root on another disk) and run the same command"
        ) from None
    except DownloadError as err:
        kept = any(it.path is None for it, _ in got)
        suffix = f"; the downloaded files are kept in {downloads}" if kept else ""
        raise DownloadError(
            f"{err}; nothing was unpacked{suffix}: run the same command again"
        ) from None
    if not keep_archives:
        for item, path in got:
            if item.path is None:
                path.unlink(missing_ok=True)
    return files


def _build_ap10k(
    raw: Path, target: Path, downloads: Path, record: dict, link_images: bool, log: Log
) -> dict:
    from .ap10k import build_ap10k

    staging = _stage(downloads, target.name)
    out = staging / target.name
    log(f"building the AP-10K benchmark from {raw} -> {target}")
    try:
        try:
            manifest = build_ap10k(raw, out, link_images=link_images)
        except OSError as err:  # disk full / read-only (corr.io.WriteError is an OSError)
            if isinstance(err, FileNotFoundError):
                raise DownloadError(f"building AP-10K from {raw} failed: {err}") from None
            raise DownloadError(
                disk_message(err, target.parent, "building AP-10K") + "; nothing was left in "
                f"{target}: free some space and run the same command"
            ) from None
        except ValueError as err:
            raise DownloadError(f"building AP-10K from {raw} failed: {err}") from None
        record = {**record, "built_from": str(raw), "pairs": manifest["pairs"]}
        _finish(out, target, record)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def download(
    dataset: str,
    root: str | Path = "data",
    *,
    origins: Sequence[str] = (),
    sums: Mapping[str, str] | None = None,
    table: Mapping[str, Any] | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool | None = None,
    keep_archives: bool = False,
    link_images: bool = False,
    log: Log = print,
) -> DownloadResult:
    """Download, verify and unpack ``dataset`` ("spair", "pfpascal", "ap10k") into ``root``.

    ``origins``: ``--from`` values (a file, a folder of files, a URL of one file, a base URL
    ending in ``/``). ``sums``: file name -> SHA-256 overriding the recorded sums. ``table``:
    a sources table replacing ``sources.json``. The result's ``folder`` is ``root/{folder}``
    (``SPair-71k``, ``PF-Pascal``, ``AP-10K``), the ``--root`` for ``corr.eval``.
    Raises :class:`DownloadError` (one message saying what to do) or ValueError for bad input.
    """
    entry = dataset_entry(dataset, table)
    root = Path(root)
    target = root / entry["folder"]
    done = read_record(target)
    if done is not None and done.get("dataset") == dataset:
        log(
            f"{entry['title']}: {target} is already complete (record {target / RECORD}, made "
            f"{done.get('created', '?')}); nothing to do"
        )
        return DownloadResult(dataset, target, "complete", list(done.get("files", [])))
    if target.exists():
        raise DownloadError(
            f"{entry['title']}: {target} exists but was not made by this command (no "
            f"{RECORD} in it), so it is left alone; check it with: python -m corr.datasets "
            f"check {dataset} --root {target}, or move it away and run this again"
        )
    downloads = root / DOWNLOADS
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create {downloads}: {err.strerror or err}") from None
    try:
        files = _download_locked(
            dataset, entry, root, target, downloads, origins, sums,
            retries=retries, timeout=timeout, progress=progress, keep_archives=keep_archives,
            link_images=link_images, log=log,
        )  # fmt: skip
    finally:
        for leftover in (downloads / f".lock-{dataset}", downloads):
            try:  # the lock file, then the folder when nothing is kept in it
                leftover.unlink() if leftover.is_file() else leftover.rmdir()
            except OSError:
                pass
    log(
        f"{entry['title']} is ready in {target}; check it with: python -m corr.datasets check "
        f"{dataset} --root {target}"
    )
    return DownloadResult(dataset, target, "done", files)


def _download_locked(
    dataset: str,
    entry: dict,
    root: Path,
    target: Path,
    downloads: Path,
    origins: Sequence[str],
    sums: Mapping[str, str] | None,
    *,
    retries: int,
    timeout: float,
    progress: bool | None,
    keep_archives: bool,
    link_images: bool,
    log: Log,
) -> list[dict]:
    with folder_lock(downloads, dataset):
        kw = dict(retries=retries, timeout=timeout, progress=progress, log=log)
        if entry.get("build") == "ap10k":
            raw = root / entry["raw_folder"]
            raw_record = read_record(raw)
            if raw_record is not None and raw_record.get("dataset") == dataset:
                log(f"{entry['title']}: the raw release {raw} is complete; building only")
                files = list(raw_record.get("files", []))
            else:
                if raw.exists():
                    raise DownloadError(
                        f"{entry['title']}: {raw} exists but was not made by this command (no "
                        f"{RECORD} in it), so it is left alone; build from it with: python -m "
                        f"corr.datasets.ap10k build --src {raw} --out {target}, or move it away"
                    )
                files = _fetch_and_unpack(
                    dataset, entry, raw, root, downloads, origins, sums,
                    keep_archives=keep_archives, **kw,
                )  # fmt: skip
            record = {
                "dataset": dataset,
                "title": entry["title"],
                "tool": "corr.datasets.download",
                "record_version": 1,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": files,
            }
            manifest = _build_ap10k(raw, target, downloads, record, link_images, log)
            log(f"AP-10K pairs: {manifest['pairs']}")
        else:
            files = _fetch_and_unpack(
                dataset, entry, target, root, downloads, origins, sums,
                keep_archives=keep_archives, **kw,
            )  # fmt: skip
    return files
