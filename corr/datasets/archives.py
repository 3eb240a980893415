"""Safe unpacking of tar (any compression) and zip archives into a folder (generic).

:func:`unpack_archive` refuses, before writing it, any member that would land outside the target
folder: an absolute path, a ``..`` component, a link pointing outside, a folder reached through
links that lead outside, a hard link to something not unpacked before it, a device or pipe.
Links are judged by where they really lead in the unpacked tree, not only by their text: once
every member is written, an archive any of whose links resolves (all links followed) outside the
folder is refused, so a chain such as ``r -> .``, ``up -> r/..``, ``x -> ../up/secret`` cannot
reach outside. Every write goes through :func:`corr.datasets.fetching.write_bytes`.

Only the standard library (tarfile, zipfile) and tqdm are used.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from . import fetching
from .fetching import DiskError, DownloadError, WriteFailedError, disk_message, looks_like_html
from .paths import within

__all__ = ["unpack_archive", "UnsafeArchiveError", "CorruptArchiveError"]

_JUNK_DIRS = {"__MACOSX"}
_JUNK_FILES = {".DS_Store", "Thumbs.db"}


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the target folder (absolute path, ``..``, link)."""


class CorruptArchiveError(DownloadError):
    """An archive cannot be read to the end (truncated, damaged, or not an archive)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = Path(path)


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
    """Writes into ``root``: every folder a member goes through is followed to its real place,
    which must lie inside ``root``; the links made are remembered for :meth:`links_leaving`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = os.path.realpath(root)
        self.links: dict[str, tuple[str, str]] = {}  # real path of a link -> (member, target)

    def _unsafe(self, name: str, archive: Path, real: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{archive}: member {name!r} would be written through a link to {real}, outside "
            "the target folder; refusing to unpack this archive"
        )

    def path(self, rel: PurePosixPath, archive: Path, name: str) -> Path:
        """Where member ``name`` goes. Its folders are made one at a time inside the real
        folder of the one before (nothing is ever created through a link leading outside); an
        existing link or file at the place itself is removed (never written through)."""
        folder = self.real
        for part in rel.parts[:-1]:
            step = os.path.join(folder, part)
            if os.path.lexists(step):
                step = os.path.realpath(step)
                if not within(step, self.real):
                    raise self._unsafe(name, archive, step)
                if not os.path.isdir(step):  # a file (or a dangling link) where a folder goes
                    raise DiskError(FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), step))
            else:
                try:
                    os.mkdir(step)
                except OSError as err:
                    raise DiskError(err) from err
            folder = step
        path = Path(folder, rel.parts[-1])
        if os.path.islink(path) or (os.path.lexists(path) and not path.is_dir()):
            path.unlink()  # a later member replaces an earlier one; never write through a link
        return path

    def mkdir(self, rel: PurePosixPath, archive: Path, name: str) -> None:
        path = self.path(rel, archive, name) if rel.parts else self.root
        try:
            path.mkdir(exist_ok=True)
        except OSError as err:
            raise DiskError(err) from err

    def file(self, rel: PurePosixPath, src: BinaryIO, archive: Path, name: str, bar) -> Path:
        """Write member ``name`` from ``src``; returns the real path written."""
        path = self.path(rel, archive, name)
        try:
            with open(path, "wb") as f:
                while True:
                    chunk = src.read(fetching.CHUNK)
                    if not chunk:
                        break
                    fetching.write_bytes(f, chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except OSError as err:
            if err.errno is None:  # a decompression error surfaced as OSError
                raise
            raise DiskError(err) from err
        return path

    def copy(self, rel: PurePosixPath, source: Path, archive: Path, name: str) -> None:
        """A hard link: copy the file unpacked before as ``source``, wherever it really is now
        (a later member may have put a link in its place); outside the folder is refused."""
        real = os.path.realpath(source)
        if not within(real, self.real):
            raise self._unsafe(name, archive, real)
        path = self.path(rel, archive, name)
        try:
            shutil.copyfile(real, path)
        except OSError as err:
            raise DiskError(err) from err

    def symlink(self, rel: PurePosixPath, link: str, archive: Path, name: str) -> None:
        _check_link(rel, link, name, archive)
        path = self.path(rel, archive, name)
        try:
            os.symlink(link, path)
        except OSError as err:
            raise DiskError(err) from err
        self.links[str(path)] = (name, link)

    def links_leaving(self, archive: Path) -> None:
        """Once every member is unpacked: refuse the archive if a link it made leads outside the
        folder (its real target, every link followed, as a reader would find it)."""
        bad = []
        for path, (name, link) in self.links.items():
            real = os.path.realpath(path)
            if os.path.islink(path) and not within(real, self.real):
                bad.append(f"{name!r} -> {link!r} (leads to {real})")
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise UnsafeArchiveError(
                f"{archive}: once unpacked, these links lead outside the target folder through "
                f"the archive's other links: {', '.join(bad[:5])}{more}; refusing to unpack "
                "this archive (not the published one? download the published archive)"
            )


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
    if looks_like_html(head):
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
                done["/".join(parts)] = out.file(rel, src, archive, m.name, None)
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
                out.copy(rel, target, archive, m.name)
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
    out. A member with an absolute path or ``..``, a link whose text points outside ``folder``, a
    member whose folder leads outside through links unpacked before it, a hard link to something
    not unpacked before it, or a device raises :class:`UnsafeArchiveError` before it is written;
    so does, at the end, a link whose real target (every link followed, in the unpacked tree)
    lies outside ``folder``, however innocent its text (``up -> r/..`` with ``r -> .``). A
    truncated or damaged archive raises :class:`CorruptArchiveError`; a
    failed write (disk full) :class:`WriteFailedError` naming the folder. ``folder`` is left as it
    is on error: unpack into a staging folder and remove it then.
    """
    archive, folder = Path(archive), Path(folder)
    kind = _kind(archive)
    folder.mkdir(parents=True, exist_ok=True)
    out = _Out(folder)
    total = archive.stat().st_size if kind == "tar" else None
    with fetching.progress_bar(total, f"unpack {archive.name}", progress) as bar:
        try:
            if kind == "tar":
                n = _unpack_tar(archive, out, member, to, bar)
            else:
                n = _unpack_zip(archive, out, member, to, bar)
            out.links_leaving(archive)
            return n
        except DiskError as err:
            raise WriteFailedError(
                disk_message(err.err, folder, f"unpacking {archive.name}")
            ) from None
        except DownloadError:
            raise
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise CorruptArchiveError(
                f"{archive} is damaged or truncated ({type(err).__name__}: {err})", archive
            ) from None
        except NotImplementedError as err:  # an unsupported zip compression method
            raise CorruptArchiveError(f"{archive}: {err}", archive) from None
