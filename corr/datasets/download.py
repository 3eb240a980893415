"""Download, verify and unpack the benchmarks: ``python -m corr.datasets download NAME --root DIR``.

What each data set is made of lives in ``corr/datasets/sources.json`` (the published URLs, where
each URL is published, the known SHA-256 sums, and how each file is unpacked). For a data set
``NAME`` with folder ``F`` (``SPair-71k``, ``PF-Pascal``, ``AP-10K``):

1. Each file is fetched into ``DIR/.downloads/{file}.part`` with a progress bar (bytes, speed);
   an interrupted download resumes there with an HTTP ``Range`` request, and a dropped
   connection is retried (and resumed) a few times. ``--from`` takes a file you already have, a
   folder holding the files, a mirror URL of one file, or a mirror base URL ending in ``/``.
2. The SHA-256 of each file is checked against the recorded sum; a file without a recorded sum
   is accepted and its sum printed (so it can be recorded).
3. Archives are unpacked into ``DIR/.downloads/unpack-F/F``, refusing any member whose path
   leaves that folder (absolute paths, ``..``, links pointing outside), then the folder is
   renamed to ``DIR/F`` in one step, with a record ``DIR/F/.corr-download.json`` written before
   the rename: ``DIR/F`` exists only when complete. For AP-10K the raw release is unpacked to
   ``DIR/ap-10k`` and the benchmark builder (:func:`corr.datasets.ap10k.build_ap10k`) writes
   ``DIR/AP-10K`` the same way.
4. Re-running on a complete folder does nothing and says so; a folder ``DIR/F`` that has no
   record (unpacked by hand) is never touched.

Only the standard library (urllib, tarfile, zipfile, hashlib) and tqdm are used.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

__all__ = [
    "download",
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
CHUNK = 1 << 20
RETRY_WAIT = 2.0  #: seconds before retry n is n x this
USER_AGENT = "corr-datasets/1 (Python urllib)"
_JUNK_DIRS = {"__MACOSX"}
_JUNK_FILES = {".DS_Store", "Thumbs.db"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Log = Callable[[str], None]


class DownloadError(RuntimeError):
    """A download, check or unpacking step failed; the message says what to do next."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the target folder (absolute path, ``..``, link)."""


class WriteFailedError(DownloadError):
    """Writing failed (disk full, read-only folder); nothing partial is left as if complete."""


class CorruptArchiveError(DownloadError):
    """An archive cannot be read to the end (truncated, damaged, or not an archive)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = Path(path)


@dataclass
class DownloadResult:
    """What :func:`download` did: ``status`` is ``"done"`` or ``"complete"`` (nothing to do)."""

    dataset: str
    folder: Path
    status: str
    files: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ sources table


def sources() -> dict[str, dict]:
    """The packaged table ``corr/datasets/sources.json``: data-set name -> its entry."""
    text = resources.files("corr.datasets").joinpath("sources.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def _entry(dataset: str, table: Mapping[str, Any] | None) -> dict:
    table = sources() if table is None else table
    if dataset not in table:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(table)}")
    return dict(table[dataset])


def download_hint(dataset: str, root: str | Path) -> str:
    """One or two lines telling how to get ``dataset`` so that ``root`` is its folder."""
    entry = _entry(dataset, None)
    root = Path(root)
    folder = entry["folder"]
    parent = root.parent
    cmd = f"python -m corr.datasets download {dataset} --root {parent}"
    if root.name == folder:
        hint = f"to download it: {cmd}"
    else:
        hint = f"to download it: {cmd} (this makes {parent / folder}; pass that as --root)"
    if root.is_dir():
        hint += f"\nto see what this folder lacks: python -m corr.datasets check {dataset} --root {root}"
    return hint


# ------------------------------------------------------------------------------------ helpers


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _bar(total: int | None, desc: str, progress: bool | None, initial: int = 0):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=None if progress is None else not progress,
        leave=False,
    )


def _write(f: BinaryIO, data: bytes) -> None:
    """Every byte this module writes goes through here (one place to fail on a full disk)."""
    f.write(data)


class _DiskError(Exception):
    """A write failed (disk full, read-only, ...); carries the OSError."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


def _disk_message(err: OSError, folder: Path, doing: str) -> str:
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = "the disk is full (no space left on device)"
    else:
        what = f"cannot write ({err.strerror or err})"
    return f"{what} in {folder} while {doing}"


def _looks_like_html(head: bytes, content_type: str = "") -> bool:
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    start = head[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def sha256_file(path: str | Path, progress: bool | None = None) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (with a progress bar)."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f, _bar(path.stat().st_size, f"sha256 {path.name}", progress) as bar:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _atomic_json(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path``, fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
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


@contextmanager
def _lock(folder: Path, dataset: str) -> Iterator[None]:
    """Hold ``folder/.lock-{dataset}`` (flock) so two downloads never share a ``.part`` file."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: run unlocked
        yield
        return
    path = folder / f".lock-{dataset}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DownloadError(
                f"another download of {dataset} into {folder.parent} is running (it holds "
                f"{path}); wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------- fetch


class _Retry(Exception):
    """A failure worth retrying (connection dropped, timeout, 5xx)."""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from ``bytes a-b/total`` or ``bytes */total``."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _fetch_once(
    url: str, part: Path, *, timeout: float, progress: bool | None, manual: str, log: Log
) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and have:
            _, total = _content_range(err.headers.get("Content-Range"))
            if total == have:
                return  # the .part is already the whole file
            part.unlink()
            raise _Retry(f"the server refused to resume {part.name}; starting it again") from None
        if err.code >= 500 or err.code in (408, 429):
            raise _Retry(f"HTTP {err.code} {err.reason}") from None
        raise DownloadError(f"{url} answered HTTP {err.code} {err.reason}; {manual}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _Retry(f"cannot reach {urllib.parse.urlsplit(url).netloc}: {reason}") from err
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Retry(f"the server resumed {part.name} at the wrong byte; starting again")
            if total is None and length is not None:
                total = have + length
        else:
            if have:
                log(
                    f"{urllib.parse.urlsplit(url).netloc} does not resume; starting {part.name} again"
                )
            have = 0
            total = length
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if total - have > free:
                raise DownloadError(
                    f"not enough space in {part.parent}: {part.name[:-5]} needs "
                    f"{_human(total - have)} more and {_human(free)} are free; free some space "
                    "(or pass --root on a larger disk), then run the same command"
                )
        try:
            f = open(part, "ab" if have else "wb")
        except OSError as err:
            raise _DiskError(err) from err
        with f, _bar(total, part.name[:-5], progress, initial=have) as bar:
            first = not have
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _Retry(f"the connection broke ({err!r})") from err
                if not chunk:
                    break
                if first and _looks_like_html(chunk, ctype):
                    raise _HtmlPage()
                first = False
                try:
                    _write(f, chunk)
                except OSError as err:
                    raise _DiskError(err) from err
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"the connection closed after {_human(size)} of {_human(total)}")
    if total is not None and size > total:
        part.unlink()
        raise _Retry(f"{part.name} grew past the announced size; starting again")


class _HtmlPage(Exception):
    pass


def fetch(
    url: str,
    dest: str | Path,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool | None = None,
    manual: str = "download it by hand and pass the file with --from",
    log: Log = print,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it with HTTP Range.

    A dropped connection, a timeout or a 5xx answer is retried ``retries`` times (resuming);
    then :class:`DownloadError` says how many bytes are kept for the next run. A web page
    instead of the file (Google Drive's confirmation page) raises at once with ``manual``.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, manual=manual, log=log)
            break
        except _HtmlPage:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{urllib.parse.urlsplit(url).netloc} answered with a web page instead of "
                f"{dest.name} ({url}); it cannot be fetched by plain HTTP: {manual}"
            ) from None
        except _DiskError as err:
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                _disk_message(err.err, part.parent, f"downloading {dest.name}")
                + f"; {_human(kept)} are kept in {part}: free some space (or pass --root on "
                "another disk), then run the same command to resume"
            ) from None
        except _Retry as err:
            kept = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"downloading {url} failed: {err}; {_human(kept)} are kept in {part}: run the "
                    f"same command to resume (or {manual})"
                ) from None
            wait = RETRY_WAIT * (attempt + 1)
            log(f"{err}; retrying in {wait:.0f} s ({attempt + 1} of {retries} retries)")
            time.sleep(wait)
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------------ unpack


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """The path components of an archive member; refuses absolute paths and ``..``."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refusing to unpack this archive"
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} leaves the target folder ('..'); refusing to unpack "
            "this archive"
        )
    return parts


def _check_link(where: PurePosixPath, link: str, name: str, archive: Path) -> None:
    """Refuse a link at ``where`` (relative to the folder) whose target leaves the folder."""
    if not link or link.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", link):
        raise UnsafeArchiveError(
            f"{archive}: link {name!r} -> {link!r} points outside the target folder (absolute); "
            "refusing to unpack this archive"
        )
    resolved = posixpath.normpath(posixpath.join(str(where.parent), link))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(
            f"{archive}: link {name!r} -> {link!r} points outside the target folder; refusing "
            "to unpack this archive"
        )


def _junk(parts: tuple[str, ...]) -> bool:
    return any(p in _JUNK_DIRS for p in parts) or parts[-1] in _JUNK_FILES or parts[-1][:2] == "._"


def _map(parts: tuple[str, ...], member: str | None, to: str) -> PurePosixPath | None:
    """Where a member goes, relative to the folder; None for members that are not unpacked."""
    if not parts or _junk(parts):
        return None
    if member:
        if parts[0] != member:
            return None
        parts = parts[1:]
    return PurePosixPath(to, *parts)


class _Out:
    """Writes into ``root``, checking every resolved parent stays inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = os.path.realpath(root)

    def path(self, rel: PurePosixPath, archive: Path, name: str) -> Path:
        path = self.root.joinpath(*rel.parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _DiskError(err) from err
        real = os.path.realpath(path.parent)
        if real != self.real and not real.startswith(self.real + os.sep):
            raise UnsafeArchiveError(
                f"{archive}: member {name!r} would be written through a link to {real}, outside "
                "the target folder; refusing to unpack this archive"
            )
        if os.path.islink(path) or (os.path.lexists(path) and not path.is_dir()):
            path.unlink()  # a later member replaces an earlier one; never write through a link
        return path

    def mkdir(self, rel: PurePosixPath, archive: Path, name: str) -> None:
        path = self.path(rel, archive, name) if rel.parts else self.root
        try:
            path.mkdir(exist_ok=True)
        except OSError as err:
            raise _DiskError(err) from err

    def file(self, rel: PurePosixPath, src: BinaryIO, archive: Path, name: str, bar) -> None:
        path = self.path(rel, archive, name)
        try:
            with open(path, "wb") as f:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    _write(f, chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except OSError as err:
            if err.errno is None:  # a decompression error surfaced as OSError
                raise
            raise _DiskError(err) from err

    def symlink(self, rel: PurePosixPath, link: str, archive: Path, name: str) -> None:
        _check_link(rel, link, name, archive)
        path = self.path(rel, archive, name)
        try:
            os.symlink(link, path)
        except OSError as err:
            raise _DiskError(err) from err


class _Counting:
    """A read-only file wrapper that advances a progress bar by the bytes read."""

    def __init__(self, f: BinaryIO, bar) -> None:
        self.f, self.bar = f, bar

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.bar.update(len(data))
        return data


def _kind(archive: Path) -> str:
    with open(archive, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "tar"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if _looks_like_html(head):
        raise CorruptArchiveError(
            f"{archive} is a web page, not an archive (a download site's confirmation or error "
            "page?); download the archive itself",
            archive,
        )
    raise CorruptArchiveError(
        f"{archive} is neither a tar nor a zip archive (damaged, or the wrong file)", archive
    )


def _unpack_tar(archive: Path, out: _Out, member: str | None, to: str, bar) -> int:
    done: dict[str, Path] = {}  # archive name -> unpacked regular file (for hard links)
    n = 0
    with open(archive, "rb") as raw, tarfile.open(fileobj=_Counting(raw, bar), mode="r|*") as tf:
        for m in tf:
            parts = _member_parts(m.name, archive)
            if m.issym():
                _check_link(
                    PurePosixPath(*parts) if parts else PurePosixPath("."),
                    m.linkname,
                    m.name,
                    archive,
                )
            if m.islnk():
                _member_parts(m.linkname, archive)
            rel = _map(parts, member, to)
            if rel is None:
                continue
            if m.isdir():
                out.mkdir(rel, archive, m.name)
            elif m.isreg():
                src = tf.extractfile(m)
                assert src is not None
                out.file(rel, src, archive, m.name, None)
                done["/".join(parts)] = out.root.joinpath(*rel.parts)
                n += 1
            elif m.issym():
                out.symlink(rel, m.linkname, archive, m.name)
                n += 1
            elif m.islnk():
                target = done.get("/".join(_member_parts(m.linkname, archive)))
                if target is None:
                    raise UnsafeArchiveError(
                        f"{archive}: hard link {m.name!r} -> {m.linkname!r} does not point to a "
                        "file unpacked before it; refusing to unpack this archive"
                    )
                path = out.path(rel, archive, m.name)
                try:
                    shutil.copyfile(target, path)
                except OSError as err:
                    raise _DiskError(err) from err
                n += 1
            else:
                raise UnsafeArchiveError(
                    f"{archive}: member {m.name!r} is a device or pipe; refusing to unpack this "
                    "archive"
                )
    return n


def _unpack_zip(archive: Path, out: _Out, member: str | None, to: str, bar) -> int:
    n = 0
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # every name is checked before anything is written
            _member_parts(info.filename.replace("\\", "/"), archive)
        bar.total = sum(i.file_size for i in infos)
        bar.refresh()
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = _member_parts(name, archive)
            is_link = stat.S_ISLNK(info.external_attr >> 16)
            if is_link:
                link = zf.read(info).decode("utf-8", "replace")
                _check_link(PurePosixPath(*parts), link, name, archive)
            rel = _map(parts, member, to)
            if rel is None:
                continue
            if info.flag_bits & 0x1:
                raise DownloadError(
                    f"{archive}: member {name!r} is encrypted; unpack it by hand with its password"
                )
            if is_link:
                out.symlink(rel, link, archive, name)
            elif info.is_dir():
                out.mkdir(rel, archive, name)
            else:
                with zf.open(info) as src:
                    out.file(rel, src, archive, name, bar)
            n += 1
    return n


def unpack_archive(
    archive: str | Path,
    folder: str | Path,
    *,
    member: str | None = None,
    to: str = "",
    progress: bool | None = None,
) -> int:
    """Unpack the tar (any compression) or zip ``archive`` into ``folder``; returns the count.

    Only the members under ``member/`` (the archive's top folder; all when None) are unpacked,
    to ``folder/to/...``; macOS and Windows litter (``__MACOSX``, ``.DS_Store``, ``._*``) is left
    out. A member with an absolute path or ``..``, a link pointing outside ``folder``, a hard
    link to something not unpacked before it, or a device raises :class:`UnsafeArchiveError`
    before it is written. A truncated or damaged archive raises :class:`CorruptArchiveError`; a
    failed write (disk full) :class:`WriteFailedError` naming the folder. ``folder`` is left as it
    is on error: unpack into a staging folder and remove it then.
    """
    archive, folder = Path(archive), Path(folder)
    kind = _kind(archive)
    out = _Out(folder)
    folder.mkdir(parents=True, exist_ok=True)
    total = archive.stat().st_size if kind == "tar" else None
    with _bar(total, f"unpack {archive.name}", progress) as bar:
        try:
            if kind == "tar":
                return _unpack_tar(archive, out, member, to, bar)
            return _unpack_zip(archive, out, member, to, bar)
        except _DiskError as err:
            raise WriteFailedError(
                _disk_message(err.err, folder, f"unpacking {archive.name}")
            ) from None
        except DownloadError:
            raise
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise CorruptArchiveError(
                f"{archive} is damaged or truncated ({type(err).__name__}: {err})", archive
            ) from None
        except NotImplementedError as err:  # an unsupported zip compression method
            raise CorruptArchiveError(f"{archive}: {err}", archive) from None


# ---------------------------------------------------------------------------------- download


@dataclass
class _Item:
    spec: dict
    url: str | None = None  # to fetch
    path: Path | None = None  # a file the user already has (never deleted)

    @property
    def name(self) -> str:
        return str(self.spec["name"])


def _is_url(s: str) -> bool:
    return urllib.parse.urlsplit(s).scheme in ("http", "https")


def _plan(entry: dict, origins: Sequence[str], log: Log) -> list[_Item]:
    """Where each file comes from: the published URL, or what ``--from`` says."""
    files = entry["files"]
    items = [_Item(dict(f), url=f["url"]) for f in files]
    by_name = {it.name: it for it in items}

    def pick(origin: str, name: str, fix: str) -> _Item:
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


def _expected_sum(item: _Item, sums: Mapping[str, str] | None) -> str | None:
    value = (sums or {}).get(item.name, item.spec.get("sha256"))
    if value is None:
        return None
    value = str(value).strip().lower()
    if not _HEX64.match(value):
        raise ValueError(f"SHA-256 for {item.name}: {value!r} is not 64 hex digits")
    return value


def _manual(dataset: str, root: Path, item: _Item) -> str:
    note = item.spec.get("manual")
    cmd = (
        f"download {item.url} by hand and run: python -m corr.datasets download {dataset} "
        f"--root {root} --from PATH/{item.name}"
    )
    return f"{note}; {cmd}" if note else cmd


def _obtain(
    item: _Item,
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
    """Fetch (or take) one file and check its SHA-256; returns (path, record entry)."""
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
        raise WriteFailedError(_disk_message(err, content.parent, "writing the record")) from None
    os.rename(content, target)


def _unpack_all(
    dataset: str,
    entry: dict,
    got: list[tuple[_Item, Path]],
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
                        while chunk := src.read(CHUNK):
                            _write(f, chunk)
                except OSError as err:
                    raise WriteFailedError(
                        _disk_message(err, target.parent, f"copying {item.name}")
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
    items = _plan(entry, origins, log)
    got: list[tuple[_Item, Path]] = []
    files: list[dict] = []
    for item in items:
        path, info = _obtain(
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
                _disk_message(err, target.parent, "building AP-10K") + "; nothing was left in "
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
    entry = _entry(dataset, table)
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
    with _lock(downloads, dataset):
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
