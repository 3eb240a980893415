"""Names and links that must stay inside a data set folder.

:func:`data_path` turns a name read from a data file (a pair file's image name, a CSV cell, a
line of a pair list) into a path inside the data set folder, or raises :class:`DataPathError`
naming the file, line and field, before anything is opened; every loader (SPair-71k, PF-Pascal,
AP-10K and the AP-10K builder) calls it for every such name. :func:`links_leaving` finds the
symbolic links in a folder whose real target lies outside it (used by
``python -m corr.datasets check`` and after unpacking an archive).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["data_path", "DataPathError", "links_leaving", "within"]


class DataPathError(ValueError):
    """A name read from a data file does not stay inside the data set folder.

    ``file``, ``line`` (None for a JSON file), ``field`` and ``name`` say which entry.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path,
        field: str,
        line: int | None = None,
        name: object = None,
    ) -> None:
        super().__init__(message)
        self.file, self.field, self.line, self.name = Path(file), field, line, name

    def __reduce__(self):  # keep picklable despite the keyword-only signature
        kw = {"file": self.file, "field": self.field, "line": self.line, "name": self.name}
        return (_rebuild_data_path_error, (str(self), kw))


def _rebuild_data_path_error(message: str, kw: dict) -> DataPathError:
    return DataPathError(message, **kw)


_DRIVE = re.compile(r"^[A-Za-z]:")


def data_path(
    root: str | Path,
    name: object,
    *,
    file: str | Path,
    field: str,
    line: int | None = None,
    item: str = "",
    under: str | Path = "",
    base: str | Path | None = None,
) -> Path:
    """``base / under / name`` for a ``name`` read from a data file, checked before any open.

    ``name`` comes from ``field`` of ``file`` (at ``line``, or of ``item`` such as "image 7");
    ``under`` is a fixed sub-folder (code, not data), ``base`` the folder names are relative to
    (default ``root``; PF-Pascal's names are relative to the parent of ``PF-dataset-PASCAL/``).
    The name must be text, not empty, relative (no leading ``/`` or ``\\``, no drive letter),
    without ``..`` components or NUL, and the joined path must lie inside ``root`` (compared
    lexically: links inside the folder are followed when the file is read, see
    ``python -m corr.datasets check`` for files that resolve outside). Backslashes count as
    separators. Raises :class:`DataPathError` naming the file, line, field and what to do.
    """
    where = (
        f"{file}" + (f" line {line}" if line is not None else "") + (f", {item}" if item else "")
    )
    where += f", field '{field}'"
    fix = (
        "correct this entry, or restore the file from the published data set (python -m "
        "corr.datasets check lists every such entry)"
    )

    def refuse(why: str, leaves: bool = True) -> DataPathError:
        what = f"leaves the data set folder {root}" if leaves else "is not a usable file name"
        return DataPathError(
            f"{where}: the name {name!r} {what} ({why}); names in data files must be relative "
            f"paths inside the data set folder: {fix}",
            file=file,
            field=field,
            line=line,
            name=name,
        )

    if not isinstance(name, str):
        raise refuse(f"{type(name).__name__}, not a file name", leaves=False)
    text = name.replace("\\", "/")
    if "\0" in text:
        raise refuse("it contains a NUL character", leaves=False)
    if text.startswith("/") or _DRIVE.match(text):
        raise refuse("an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        raise refuse("empty: it names no file", leaves=False)
    if ".." in parts:
        raise refuse("a '..' component")
    path = Path(root if base is None else base, under, *parts)
    top = os.path.abspath(root)
    if os.path.commonpath([top, os.path.abspath(path)]) != top:
        raise refuse(f"it lands at {os.path.normpath(path)}")
    return path


def within(path: str, folder: str) -> bool:
    """True when the normalised path ``path`` is ``folder`` or lies under it (text only)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def links_leaving(
    root: str | Path, allowed: Sequence[tuple[Path, Path]] = ()
) -> list[tuple[Path, str]]:
    """``[(link, real target), ...]``: the symbolic links under ``root`` whose real target, every
    link followed, lies outside ``root`` (a link inside a folder ``a`` of ``allowed`` may also
    lead into its ``b``). Links to folders are examined, not entered; nothing is opened."""
    real_root = os.path.realpath(root)
    extra = [(os.path.abspath(a), os.path.realpath(b)) for a, b in allowed]
    found = []
    for folder, dirs, files in os.walk(root):  # does not enter linked folders
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                continue
            real = os.path.realpath(path)
            if within(real, real_root) or any(
                within(os.path.abspath(path), a) and within(real, b) for a, b in extra
            ):
                continue
            found.append((Path(path), real))
    return found
