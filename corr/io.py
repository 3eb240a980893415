"""Image loading and atomic file writes.

Limits on images (any input: file, PIL image, array, tensor), checked on a file's header before
any pixel is decoded, so that peak memory stays bounded (about 4 x 3 bytes per pixel):

- :data:`MAX_IMAGE_PIXELS`: at most 100 megapixels (e.g. 10000 x 10000); larger images are
  refused with an error naming the file (downscale them first, or raise the limit:
  ``corr.io.MAX_IMAGE_PIXELS = ...``). PIL's own decompression-bomb warning is replaced by
  this documented limit. Reduced decoding (``Image.draft``) is deliberately not used: the
  returned pixels define both the feature-cache key and the frame of every coordinate, so a
  silently shrunk image would give coordinates in the wrong frame.
- :data:`MAX_ASPECT_RATIO`: the long side at most 100 x the short side (a 50000 x 1 image
  would vanish in the square model input).

An animated or multi-page image (GIF, APNG, WebP, TIFF) gives its first frame, with a warning
naming the file and its frame count. EXIF orientation is ignored by default (pixels as stored,
the frame the benchmarks' keypoints are annotated in); ``exif_transpose=True`` applies it, so
that coordinates refer to the image as a viewer shows it (phone photos).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

#: Largest image accepted, in pixels (width x height); checked before decoding.
MAX_IMAGE_PIXELS = 100_000_000
#: Largest accepted ratio of an image's long side to its short side.
MAX_ASPECT_RATIO = 100

log = logging.getLogger("corr")


def load_image(
    image: ImageLike, name: str = "image", *, exif_transpose: bool = False
) -> np.ndarray:
    """Any supported image -> ``(H, W, 3)`` uint8 RGB array.

    Accepts a file path, a PIL image, a numpy array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``
    (uint8, uint16, or float in [0, 1]), or a tensor ``(3, H, W)`` / ``(1, 3, H, W)`` (same
    types). 16-bit pixels (arrays, and 16-bit grayscale files such as 16-bit PNGs) are scaled to
    8 bits (``round(v / 257)``), not clipped; non-finite float pixels are refused. Images above
    :data:`MAX_IMAGE_PIXELS` or :data:`MAX_ASPECT_RATIO` are refused (a file before decoding).
    By default pixels are used as stored: EXIF orientation is not applied, so keypoints
    annotated on the stored pixels stay valid; ``exif_transpose=True`` (files and PIL images)
    rotates/flips the image as its EXIF orientation says, so coordinates are in the frame a
    viewer shows. ``name`` is used in error messages.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such image file: {path}")
        where = f"{name}: cannot read image file {path}"
        try:
            with warnings.catch_warnings():  # our documented limit replaces PIL's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    _check_size(im.width, im.height, where)  # the header only: nothing decoded
                    _note_frames(im, f"{name}: {path}", str(path.resolve()))
                    if exif_transpose:
                        im = ImageOps.exif_transpose(im)
                    return _pil_rgb(im, f"{name} ({path})")
        except Image.DecompressionBombError as err:  # above 2x PIL's limit: refused at open
            found = re.search(r"\((\d+) pixels\)", str(err))
            pixels = int(found.group(1)) if found else None
            size = f"{pixels / 1e6:.3g} megapixels" if pixels else "too large"
            if pixels is not None and pixels <= MAX_IMAGE_PIXELS:  # our limit was raised past PIL's
                raise ValueError(
                    f"{where}: {size}, above PIL's own limit of "
                    f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.3g} megapixels; raise "
                    "PIL.Image.MAX_IMAGE_PIXELS too, or downscale the image first"
                ) from None
            raise ValueError(f"{where}: {size}, {_limit_text()}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{where}: {err}") from err
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, name)
        _note_frames(image, f"{name}: the PIL image", None)
        if exif_transpose:
            image = ImageOps.exif_transpose(image)
        return _pil_rgb(image, name)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(
                f"{name}: a tensor image must be (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}"
            )
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(
                f"{name}: an array image must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
            )
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        arr = arr[:, :, :3]
        if arr.dtype == np.uint16:
            arr = _from_16bit(arr)
        elif arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(
                    f"{name}: array images must be uint8, uint16 or float in [0, 1], got {arr.dtype}"
                )
            bad = int((~np.isfinite(arr)).sum())
            if bad:
                raise ValueError(
                    f"{name}: {bad} pixel value(s) are NaN or infinite; fill or mask them first"
                )
            if arr.min() < 0 or arr.max() > 1:
                raise ValueError(f"{name}: float images must lie in [0, 1]")
            arr = np.round(arr * 255).astype(np.uint8)
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{name}: the image is empty ({arr.shape[1]}x{arr.shape[0]})")
        _check_size(arr.shape[1], arr.shape[0], name)
        return np.ascontiguousarray(arr)
    raise TypeError(
        f"{name}: expected a path, PIL image, numpy array or tensor, got {type(image).__name__}"
    )


_FRAMES_NOTED: set[str] = set()


def _note_frames(im: Image.Image, what: str, once_key: str | None) -> None:
    """Say (a warning, once per file and process) that only the first frame of an animated or
    multi-page image is used."""
    frames = getattr(im, "n_frames", 1)
    if frames <= 1 or (once_key is not None and once_key in _FRAMES_NOTED):
        return
    if once_key is not None:
        _FRAMES_NOTED.add(once_key)
    log.warning(
        "%s has %d frames (an animated or multi-page image): only the first frame is used",
        what,
        frames,
    )


def _limit_text() -> str:
    return (
        f"above the limit of {MAX_IMAGE_PIXELS / 1e6:g} megapixels (corr.io.MAX_IMAGE_PIXELS); "
        "downscale the image first"
    )


def _check_size(width: int, height: int, where: str) -> None:
    """Refuse an image above :data:`MAX_IMAGE_PIXELS` or :data:`MAX_ASPECT_RATIO`."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{where}: {width}x{height} = {width * height / 1e6:.3g} megapixels, {_limit_text()}"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(
            f"{where}: {width}x{height} has an aspect ratio above {MAX_ASPECT_RATIO}:1 "
            "(corr.io.MAX_ASPECT_RATIO), too thin for the square model input; crop or pad it"
        )


def _from_16bit(arr: np.ndarray) -> np.ndarray:
    """16-bit pixels -> 8 bits, ``round(v / 257)`` (65535 -> 255)."""
    return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)


def _pil_rgb(im: Image.Image, name: str) -> np.ndarray:
    """A PIL image -> ``(H, W, 3)`` uint8; 16-bit grayscale is scaled, not clipped."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(
                f"{name}: {im.mode} pixels outside 0..65535 (a 32-bit image); convert it to 8 bits"
            )
        gray = _from_16bit(arr.astype(np.uint16))
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if im.mode == "F":
        raise ValueError(
            f"{name}: a 32-bit float image; convert it to 8 bits (or pass an array in [0, 1])"
        )
    return np.asarray(im.convert("RGB"))


class WriteError(OSError):
    """A file could not be written (disk full, read-only folder, ...). The message names the
    file and its folder; files written before are left as they were."""

    def __init__(self, path: str | os.PathLike, err: OSError) -> None:
        super().__init__(err.errno, err.strerror or str(err))
        self.path = Path(path)
        self.reason = err.strerror or str(err)

    def __str__(self) -> str:
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = "free space on that disk"
        elif self.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            hint = "make the folder writable"
        else:
            hint = "check the folder"
        return (
            f"cannot write {self.path}: {self.reason} (folder {self.path.parent}); {hint}, or "
            "write elsewhere; everything written before is kept"
        )

    def __reduce__(self):  # picklable (DataLoader workers, futures)
        return (_write_error, (str(self.path), self.errno, self.reason))


def _write_error(path: str, code: int | None, reason: str) -> WriteError:
    return WriteError(path, OSError(code, reason))


#: Temporary files of interrupted writes older than this are removed whatever their origin.
STALE_TMP_SECONDS = 3600
_TMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]*)-(?P<pid>\d+)\.[^.]+\.tmp$")


def host_name() -> str:
    """This machine's name as it appears in temporary file names (letters, digits, _ and -)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    ``durable=False`` skips the ``fsync`` before the rename: for many small files whose
    writer calls :func:`os.sync` before it writes the file that marks them complete (the
    AP-10K builder's ``manifest.json``); after a power cut such a file may be empty. The
    temporary file (same folder, named ``.{name}.{host}-{pid}.*.tmp``) is removed on any
    error; one left by a killed process is removed by :func:`remove_stale_temporaries`. An
    ``OSError`` (disk full, read-only folder) is raised as :class:`WriteError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{host_name()}-{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as err:
        raise WriteError(path, err) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(path, err) from None
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` of this machine is running (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


#: suffix of the claim files of :func:`claim_file`
CLAIM_SUFFIX = ".claim"


def claim_file(path: str | os.PathLike) -> bool:
    """Claim the right to write ``path`` (a file several processes may want to make): create
    ``.{name}.claim`` beside it, exclusively (``O_EXCL``), holding this process's pid, host and
    time. True when this process now holds the claim; False while another running process holds
    it. A claim whose owner is gone (a process of this machine no longer running, or any claim
    older than :data:`STALE_TMP_SECONDS`) is taken over. Release it with :func:`release_claim`.
    Claims only avoid double work: two processes that both write ``path`` atomically give a
    correct file, so a lost race costs time, never correctness."""
    claim = claim_path(path)
    for _ in range(2):
        try:
            claim.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if claim_owner(path) is not None:
                return False
            try:  # the owner is gone: take it over
                claim.unlink()
            except FileNotFoundError:
                pass
            continue
        except OSError as err:
            raise WriteError(claim, err) from None
        info = {"pid": os.getpid(), "host": host_name(), "time": time.time()}
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info))
        return True
    return False  # another process took it over at the same moment


def claim_path(path: str | os.PathLike) -> Path:
    """The claim file of ``path``: ``.{name}.claim`` in its folder."""
    path = Path(path)
    return path.with_name(f".{path.name}{CLAIM_SUFFIX}")


def claim_owner(path: str | os.PathLike) -> str | None:
    """``"process PID on HOST"`` holding the claim of ``path``; None when there is no claim or
    its owner is gone (see :func:`claim_file`)."""
    return _live_claim(claim_path(path), host_name(), time.time())


def release_claim(path: str | os.PathLike) -> None:
    """Remove this process's claim of ``path`` (if it is still there)."""
    claim = claim_path(path)
    try:
        if json.loads(claim.read_text()).get("pid") == os.getpid():
            claim.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _live_claim(claim: Path, host: str, now: float) -> str | None:
    try:
        st = claim.stat()
        info = json.loads(claim.read_text())
        pid, owner_host = int(info["pid"]), str(info["host"])
        started = float(info["time"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # being written, or garbled
        return None if time.time() - _mtime(claim) > 60 else "a process (claim being written)"
    if now - max(started, st.st_mtime) > STALE_TMP_SECONDS:
        return None
    if owner_host == host and (pid == os.getpid() or not pid_alive(pid)):
        return None  # gone, or this process (never wait for oneself)
    return f"process {pid} on {owner_host}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = True) -> int:
    """Remove the temporary files of interrupted :func:`atomic_write_bytes` calls under
    ``folder``: those of a process of this machine that is no longer running, and any older
    than :data:`STALE_TMP_SECONDS`. Returns how many were removed (a warning says so). Claim
    files (:func:`claim_file`) whose owner is gone are removed too (not counted)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    host, now = host_name(), time.time()
    removed, freed = 0, 0
    walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for dirpath, _, names in walk:
        for name in names:
            if name.startswith(".") and name.endswith(CLAIM_SUFFIX):
                claim = Path(dirpath) / name
                if _live_claim(claim, host, now) is None:
                    with contextlib.suppress(OSError):
                        claim.unlink()
                continue
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            f = Path(dirpath) / name
            m = _TMP_NAME.match(name)
            try:
                st = f.stat()
                dead = m is not None and m["host"] == host and not pid_alive(int(m["pid"]))
                if dead or now - st.st_mtime > STALE_TMP_SECONDS:
                    f.unlink()
                    removed, freed = removed + 1, freed + st.st_size
            except OSError:
                continue  # gone already, or not ours to remove
    if removed:
        log.warning(
            "removed %d temporary file(s) (%.1f MB) left by interrupted writes under %s",
            removed,
            freed / 1e6,
            folder,
        )
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    """Atomic text write (UTF-8); ``durable`` as in :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, durable: bool = True) -> None:
    """Atomic JSON write, indented, keys in insertion order."""
    atomic_write_text(
        path, json.dumps(obj, indent=2, default=_json_default) + "\n", durable=durable
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
