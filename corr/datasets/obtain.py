"""What each data set is made of, and obtaining one of its files, verified.

The packaged table ``corr/datasets/sources.json`` names, per data set, its files (published
URL, known SHA-256, how each is unpacked). :func:`plan_files` says where each file comes from
(the published URL, or what ``--from`` gives: a file, a folder of files, a mirror URL of one
file, a mirror base URL ending in ``/``); :func:`obtain_file` fetches it (or takes the user's
copy) and checks its SHA-256 against the recorded sum, or prints the sum when none is recorded.
"""

from __future__ import annotations

import json
import posixpath
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .fetching import DownloadError, Log, fetch, sha256_file

__all__ = ["sources", "dataset_entry", "PlannedFile", "plan_files", "obtain_file"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sources() -> dict[str, dict]:
    """The packaged table ``corr/datasets/sources.json``: data-set name -> its entry."""
    text = resources.files("corr.datasets").joinpath("sources.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def dataset_entry(dataset: str, table: Mapping[str, Any] | None = None) -> dict:
    """A copy of ``dataset``'s entry in ``table`` (default: :func:`sources`); ValueError if none."""
    table = sources() if table is None else table
    if dataset not in table:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(table)}")
    return dict(table[dataset])


@dataclass
class PlannedFile:
    """One file of a data set: its ``sources.json`` entry and where it comes from."""

    spec: dict
    url: str | None = None  # to fetch
    path: Path | None = None  # a file the user already has (never deleted)

    @property
    def name(self) -> str:
        """The file's published name (``spec["name"]``)."""
        return str(self.spec["name"])


def _is_url(s: str) -> bool:
    return urllib.parse.urlsplit(s).scheme in ("http", "https")


def plan_files(entry: dict, origins: Sequence[str], log: Log) -> list[PlannedFile]:
    """Where each file comes from: the published URL, or what ``--from`` says."""
    files = entry["files"]
    items = [PlannedFile(dict(f), url=f["url"]) for f in files]
    by_name = {it.name: it for it in items}

    def pick(origin: str, name: str, fix: str) -> PlannedFile:
        """The file ``origin`` stands for: the one of that name, or the only one asked for."""
        target = by_name.get(name)
        if target is None and len(origins) == 1:
            target = items[0]
        if target is None:
            raise ValueError(
                f"--from {origin}: its name {name!r} is none of {', '.join(by_name)}; {fix}"
            )
        return target

    for origin in origins:
        origin = str(origin)
        if _is_url(origin):
            if origin.endswith("/"):
                for it in items:
                    it.url, it.path = (
                        urllib.parse.urljoin(origin, urllib.parse.quote(it.name)),
                        None,
                    )
                continue
            base = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(origin).path))
            target = pick(origin, base, "give one --from per file, named like the files")
            target.url, target.path = origin, None
            continue
        path = Path(origin).expanduser()
        if path.is_dir():
            for it in items:
                if (path / it.name).is_file():
                    it.url, it.path = None, path / it.name
                else:
                    log(f"{it.name} is not in {path}; it is fetched from {it.url}")
            continue
        if not path.is_file():
            raise ValueError(
                f"--from {origin}: no such file or folder (give an archive you downloaded, a "
                "folder holding the files, or an http(s) URL)"
            )
        target = pick(origin, path.name, "rename it, or give a single --from for the main archive")
        target.url, target.path = None, path
    return items


def _expected_sum(item: PlannedFile, sums: Mapping[str, str] | None) -> str | None:
    value = (sums or {}).get(item.name, item.spec.get("sha256"))
    if value is None:
        return None
    value = str(value).strip().lower()
    if not _HEX64.match(value):
        raise ValueError(f"SHA-256 for {item.name}: {value!r} is not 64 hex digits")
    return value


def _manual(dataset: str, root: Path, item: PlannedFile) -> str:
    note = item.spec.get("manual")
    cmd = (
        f"download {item.url} by hand and run: python -m corr.datasets download {dataset} "
        f"--root {root} --from PATH/{item.name}"
    )
    return f"{note}; {cmd}" if note else cmd


def obtain_file(
    item: PlannedFile,
    dataset: str,
    root: Path,
    downloads: Path,
    sums: Mapping[str, str] | None,
    *,
    retries: int,
    timeout: float,
    progress: bool | None,
    log: Log,
) -> tuple[Path, dict]:
    """Fetch (or take) one file and check its SHA-256; returns (path, record entry).

    A fetched file goes to ``downloads/{name}`` (a copy left there by an earlier run is reused);
    ``sums`` (file name -> hex) overrides the recorded sums. A mismatch removes a fetched file,
    never the user's own, and raises :class:`DownloadError` saying how to accept a new sum.
    """
    expected = _expected_sum(item, sums)
    ours = item.path is None
    if ours:
        path = downloads / item.name
        if path.is_file():
            log(f"{item.name}: using the copy downloaded before ({path})")
        else:
            log(f"downloading {item.url} -> {path}")
            fetch(
                item.url,
                path,
                retries=retries,
                timeout=timeout,
                progress=progress,
                manual=_manual(dataset, root, item),
                log=log,
            )
    else:
        path = item.path
        log(f"{item.name}: using {path}")
    digest = sha256_file(path, progress)
    if expected is not None and digest != expected:
        if ours:
            path.unlink()
            fate = "it was removed; run the same command to fetch it again"
        else:
            fate = f"your file {path} was left as it is"
        raise DownloadError(
            f"SHA-256 mismatch for {item.name}: got {digest}, expected {expected}; the file is "
            f"damaged or is not the published one ({fate}). If the publisher changed the file "
            f"and you trust it, pass --sha256 {item.name}={digest}"
        )
    if expected is None:
        log(
            f"SHA-256 of {item.name}: {digest} (no sum is recorded for it in "
            "corr/datasets/sources.json: accepted; record it there to check later downloads)"
        )
    else:
        log(f"SHA-256 of {item.name}: {digest} (verified)")
    entry = {
        "name": item.name,
        "origin": item.url if ours else str(path),
        "sha256": digest,
        "verified": expected is not None,
        "bytes": path.stat().st_size,
    }
    return path, entry
