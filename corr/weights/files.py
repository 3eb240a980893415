"""Reading weights safely, and checking that a local candidate is usable.

State dicts are read with ``safetensors`` or ``torch.load(weights_only=True)`` only
(:func:`load_state_dict`): a pickle that would call code is refused without running it
(:class:`UnsafeWeightsError`), and a corrupt, truncated or hostile file raises
:class:`WeightsFileError`, one line naming the file (never torch's advice to retry with
``weights_only=False``). :func:`diffusers_folder_problem` and :func:`weights_file_problem`
say what a local folder or file lacks (None when it is usable).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from .registry import SD_COMPONENTS


class WeightsFileError(ValueError):
    """A weights file is corrupt, truncated, of the wrong kind, or holds code: one line naming it."""


class UnsafeWeightsError(WeightsFileError, pickle.UnpicklingError):
    """A weights file whose pickle would call code (refused; nothing of it was run)."""


# --------------------------------------------------------------------------------------------
# Validation of local candidates
# --------------------------------------------------------------------------------------------

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _component_problem(folder: Path, component: str) -> str | None:
    sub = folder / component
    if not (sub / "config.json").is_file():
        return f"no {component}/config.json"
    names = [p.name for p in sub.iterdir() if p.is_file()]
    if not any(
        n.startswith("diffusion_pytorch_model") and n.endswith(_WEIGHT_SUFFIXES) for n in names
    ):
        return f"no {component}/diffusion_pytorch_model*.safetensors"
    return None


def diffusers_folder_problem(folder: Path) -> str | None:
    """None when ``folder`` holds a usable diffusers UNet + VAE, else what is missing."""
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder"
    problems = [p for c in SD_COMPONENTS if (p := _component_problem(folder, c))]
    return "; ".join(problems) or None


def weights_file_problem(path: Path) -> str | None:
    """None when ``path`` is a weights file of a supported type, else what is wrong with it."""
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    if path.suffix.lower() not in (".safetensors", ".pth", ".pt", ".bin"):
        return f"unsupported file type {path.suffix!r} (want .safetensors or .pth)"
    return None


def weights_format(path: Path) -> str:
    """``"diffusers"``, ``"safetensors"`` or ``"torch"`` (a pickle read with weights_only)."""
    if path.is_dir():
        return "diffusers"
    return "safetensors" if path.suffix == ".safetensors" else "torch"


def weights_bytes(path: Path) -> int:
    """The size of a weights file, or of a diffusers folder's UNet + VAE weight files."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for component in SD_COMPONENTS:
        for f in sorted((path / component).glob("diffusion_pytorch_model*")):
            total += f.stat().st_size
    return total


# --------------------------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------------------------

_REDOWNLOAD = (
    "re-download it from a trusted source (`python -m corr.weights download NAME`), "
    "preferably as .safetensors"
)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict with safetensors, or ``torch.load(weights_only=True)``; nothing else.

    A ``{"model": ...}`` or ``{"state_dict": ...}`` wrapper is unwrapped. A file that cannot be
    read raises :class:`WeightsFileError` naming it; a pickle that would call code raises
    :class:`UnsafeWeightsError` without running anything.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as err:  # SafetensorError, OSError, ...
            raise WeightsFileError(
                f"{path}: not a readable .safetensors file ({_first_line(err)}); {_REDOWNLOAD}"
            ) from None
    elif path.suffix.lower() in (".pth", ".pt", ".bin"):  # GeoAware-SC ships .PTH
        try:
            with warnings.catch_warnings():  # e.g. "pickle protocol 4": noise for a user
                warnings.simplefilter("ignore", UserWarning)
                sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise torch_load_error(path, err) from None
    else:
        raise WeightsFileError(f"{path}: unsupported weights file type (want .safetensors or .pth)")
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsFileError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def _first_line(err: BaseException) -> str:
    lines = [x.strip() for x in str(err).strip().splitlines() if x.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def torch_load_error(path: str | os.PathLike, err: BaseException) -> WeightsFileError:
    """A one-line error for ``torch.load(weights_only=True)`` failing on ``path``: a refused
    pickle (:class:`UnsafeWeightsError`, naming what it would call) or a corrupt file. Torch's
    advice to retry with ``weights_only=False`` is never passed on (unsafe for a hostile file,
    useless for a corrupt one)."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\n|$)", text)
    reason = (found.group(1).strip() if found else "") or (str(err).strip() and _first_line(err))
    if "weights_only" in reason or "Weights only" in reason:
        reason = ""
    call = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
    if call:
        return UnsafeWeightsError(
            f"{path}: refused: its pickle would call {call.group(1)} (code, not tensors) and "
            f"nothing of it was run; {_REDOWNLOAD}"
        )
    if isinstance(err, pickle.UnpicklingError):
        return UnsafeWeightsError(
            f"{path}: refused by the safe loader: not a plain pickle of tensors, so corrupt or "
            f"hostile ({reason or type(err).__name__}); nothing of it was run; {_REDOWNLOAD}"
        )
    reason = reason.split(". This is an internal")[0]  # torch's zip-reader boilerplate
    return WeightsFileError(
        f"{path}: not a readable PyTorch weights file, corrupt or truncated "
        f"({type(err).__name__}{': ' + reason if reason else ', empty or cut off'}); "
        f"{_REDOWNLOAD}"
    )
