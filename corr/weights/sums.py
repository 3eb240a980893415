"""Checksums of weights files, and the user's override of where a known model comes from.

:func:`file_sha256` is the SHA-256 of a file: free for a Hugging Face cache file (its blob is
named by the SHA-256 the hub served, the LFS object id), streamed otherwise and remembered per
(path, size, modification time) for the rest of the process. :func:`weights_sums` gives the
sums of the files a model loads (``unet/`` and ``vae/`` weights of a diffusers folder, or the
one file); :func:`sums_problem` compares them with the official sums of a
:class:`~corr.weights.registry.KnownWeights` entry (``sha256``).

:func:`repo_override` reads ``$CORR_<NAME>_REPO`` (``CORR_SD21_REPO``, ``CORR_SD15_REPO``,
``CORR_SD15_CLEANDIFT_REPO``, ...): a hub id (or a local folder) tried before every id the
entry lists; ``python -m corr.eval --sd-repo`` sets it for the run's SD model
(:func:`set_repo_override`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .registry import SD_COMPONENTS, KnownWeights

_CHUNK = 1 << 22
_MEMO: dict[tuple[str, int, int], str] = {}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of ``path`` (hex). A link into a Hugging Face cache's ``blobs/`` folder is
    named by it already; other files are read once per process (size and mtime unchanged)."""
    path = Path(path)
    real = path.resolve()
    if real.parent.name == "blobs" and _HEX64.match(real.name):
        return real.name
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        _MEMO[key] = h.hexdigest()
    return _MEMO[key]


def weights_files(path: Path) -> list[tuple[str, Path]]:
    """``(name, file)`` of the weights a model loads from ``path``: the file itself, or the
    ``unet/`` and ``vae/`` weight files of a diffusers folder (named ``unet/<file>``)."""
    if path.is_file():
        return [(path.name, path)]
    out = []
    for component in SD_COMPONENTS:
        for f in sorted((path / component).glob("diffusion_pytorch_model*")):
            if f.suffix in (".safetensors", ".bin"):
                out.append((f"{component}/{f.name}", f))
    return out


def weights_sums(path: str | os.PathLike) -> dict[str, str]:
    """``{name: SHA-256}`` of the weights files of ``path`` (see :func:`weights_files`)."""
    return {name: file_sha256(f) for name, f in weights_files(Path(path))}


def sums_problem(path: str | os.PathLike, known: KnownWeights) -> str | None:
    """None when every official file of ``known`` that ``path`` holds has the official
    SHA-256 (and it holds at least one), else what differs. An entry without recorded sums
    has no problem."""
    if not known.sha256:
        return None
    path = Path(path)
    found = 0
    for name, expected in known.sha256:
        f = path if path.is_file() else path / name
        if path.is_file() and path.name != Path(name).name:
            continue
        if not f.is_file():
            continue
        found += 1
        got = file_sha256(f)
        if got != expected:
            return f"{name} has SHA-256 {got}, not the official {expected}"
    if not found:
        wanted = ", ".join(name for name, _ in known.sha256)
        return f"none of the files with official sums ({wanted}) is there to check"
    return None


def repo_env_var(name: str) -> str:
    """``"sd21"`` -> ``"CORR_SD21_REPO"``; ``"sd15-cleandift"`` -> ``"CORR_SD15_CLEANDIFT_REPO"``."""
    return "CORR_" + re.sub(r"[^0-9A-Za-z]+", "_", name).upper() + "_REPO"


def repo_override(name: str) -> str | None:
    """The hub id or folder ``$CORR_<NAME>_REPO`` gives for the known weights ``name``."""
    value = os.environ.get(repo_env_var(name), "").strip()
    return value or None


def set_repo_override(name: str, repo: str) -> None:
    """Make ``repo`` the first place the known weights ``name`` are taken from in this
    process (``$CORR_<NAME>_REPO``; what ``--sd-repo`` does)."""
    os.environ[repo_env_var(name)] = str(repo)
