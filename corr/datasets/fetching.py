"""Resumable, verified HTTP download of one file (generic; nothing here knows a data set).

:func:`fetch` downloads a URL into ``dest.part`` with a progress bar (bytes, speed), resumes an
interrupted download with an HTTP ``Range`` request and retries a dropped connection, a timeout
or a 5xx answer a few times; :func:`sha256_file` hashes a file; :func:`folder_lock` keeps two
downloads from sharing a ``.part`` file. Every byte the download code writes (here, in
:mod:`corr.datasets.archives` and :mod:`corr.datasets.download`) goes through
:func:`write_bytes`, the one place a full disk surfaces (tests replace it to simulate one).

Only the standard library (urllib, hashlib) and tqdm are used.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "fetch",
    "sha256_file",
    "folder_lock",
    "write_bytes",
    "progress_bar",
    "human_size",
    "disk_message",
    "looks_like_html",
    "DiskError",
    "DownloadError",
    "WriteFailedError",
    "Log",
    "CHUNK",
    "RETRY_WAIT",
    "USER_AGENT",
]

CHUNK = 1 << 20  #: bytes read and written at a time
RETRY_WAIT = 2.0  #: seconds before retry n is n x this
USER_AGENT = "corr-datasets/1 (Python urllib)"

Log = Callable[[str], None]


class DownloadError(RuntimeError):
    """A download, check or unpacking step failed; the message says what to do next."""


class WriteFailedError(DownloadError):
    """Writing failed (disk full, read-only folder); nothing partial is left as if complete."""


# ------------------------------------------------------------------------------------ helpers


def human_size(n: float) -> str:
    """``n`` bytes as a short text: ``"512 B"``, ``"1.5 MB"``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def progress_bar(total: int | None, desc: str, progress: bool | None, initial: int = 0):
    """A tqdm byte bar; ``progress`` None shows it only on a terminal, False never."""
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


def write_bytes(f: BinaryIO, data: bytes) -> None:
    """Every byte the download code writes goes through here (one place to fail on a full disk).

    Callers in other modules call it as ``fetching.write_bytes`` so that a replacement of this
    attribute (a test simulating a full disk) reaches every writer.
    """
    f.write(data)


class DiskError(Exception):
    """A write failed (disk full, read-only, ...); carries the OSError.

    Raised inside the download code only; callers turn it into :class:`DownloadError` or
    :class:`WriteFailedError` with :func:`disk_message`.
    """

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


def disk_message(err: OSError, folder: Path, doing: str) -> str:
    """``"the disk is full ... in FOLDER while DOING"`` (or the OS's reason for another error)."""
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = "the disk is full (no space left on device)"
    else:
        what = f"cannot write ({err.strerror or err})"
    return f"{what} in {folder} while {doing}"


def looks_like_html(head: bytes, content_type: str = "") -> bool:
    """True when a file's first bytes (or its Content-Type) say it is a web page."""
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    start = head[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def sha256_file(path: str | Path, progress: bool | None = None) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (with a progress bar)."""
    path = Path(path)
    h = hashlib.sha256()
    bar = progress_bar(path.stat().st_size, f"sha256 {path.name}", progress)
    with open(path, "rb") as f, bar:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


@contextmanager
def folder_lock(folder: Path, dataset: str) -> Iterator[None]:
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
                    f"{human_size(total - have)} more and {human_size(free)} are free; free some "
                    "space (or pass --root on a larger disk), then run the same command"
                )
        try:
            f = open(part, "ab" if have else "wb")
        except OSError as err:
            raise DiskError(err) from err
        with f, progress_bar(total, part.name[:-5], progress, initial=have) as bar:
            first = not have
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _Retry(f"the connection broke ({err!r})") from err
                if not chunk:
                    break
                if first and looks_like_html(chunk, ctype):
                    raise _HtmlPage()
                first = False
                try:
                    write_bytes(f, chunk)
                except OSError as err:
                    raise DiskError(err) from err
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"the connection closed after {human_size(size)} of {human_size(total)}")
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
        except DiskError as err:
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                disk_message(err.err, part.parent, f"downloading {dest.name}")
                + f"; {human_size(kept)} are kept in {part}: free some space (or pass --root on "
                "another disk), then run the same command to resume"
            ) from None
        except _Retry as err:
            kept = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"downloading {url} failed: {err}; {human_size(kept)} are kept in {part}: run "
                    f"the same command to resume (or {manual})"
                ) from None
            wait = RETRY_WAIT * (attempt + 1)
            log(f"{err}; retrying in {wait:.0f} s ({attempt + 1} of {retries} retries)")
            time.sleep(wait)
    os.replace(part, dest)
    return dest
