"""Where model weights come from: a resolver that never substitutes random weights, and a CLI.

Resolution order for a weights request (``resolve``):

1. an **explicit local path** (a diffusers folder, or a ``.safetensors`` / ``.pth`` file);
2. the **weights folder**: ``$CORR_WEIGHTS_DIR`` if set, else ``weights/`` at the repository
   root (the parent of the ``corr`` package folder) when that folder exists, else
   ``./weights``. Conventions::

       weights/stable-diffusion-v1-5/        diffusers folder: unet/, vae/ (+ scheduler/,
       weights/stable-diffusion-2-1/         text_encoder/, tokenizer/, model_index.json)
       weights/vit_base_patch14_dinov2.lvd142m.safetensors     timm file, or
       weights/dinov2_vitb14_pretrain.pth                      the official Facebook file
       (same pattern for s/l/g and the reg4 variants)

3. the **Hugging Face cache** (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
   ``~/.cache/huggingface/hub``, looked up with ``local_files_only``), and for the official
   DINOv2 files the torch hub checkpoint folder;
4. a **download** from the Hugging Face Hub into its cache, unless ``HF_HUB_OFFLINE=1`` or
   ``CORR_OFFLINE=1`` is set. The hub host is probed first with a 3 s TCP connection so an
   offline machine fails in seconds instead of waiting for retries.

When nothing is found, :class:`WeightsNotFoundError` names every place looked and says how to
provide the weights. State dicts are read with ``safetensors`` or
``torch.load(weights_only=True)`` only: a pickle that would call code is refused without running
it, and a corrupt, truncated or hostile file raises :class:`WeightsFileError`, one line naming
the file (never torch's advice to retry with ``weights_only=False``).

CLI::

    python -m corr.weights list                  # what is present, and where it looked
    python -m corr.weights download sd15 dinov2_vitb14   # into the weights folder
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch

_TRUE = {"1", "ON", "YES", "TRUE"}
PROBE_TIMEOUT_S = 3.0


class WeightsNotFoundError(FileNotFoundError):
    """Real weights were requested but cannot be found anywhere; random weights are never used."""


class WeightsFileError(ValueError):
    """A weights file is corrupt, truncated, of the wrong kind, or holds code: one line naming it."""


class UnsafeWeightsError(WeightsFileError, pickle.UnpicklingError):
    """A weights file whose pickle would call code (refused; nothing of it was run)."""


# --------------------------------------------------------------------------------------------
# The table of known checkpoints (data)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownWeights:
    """One known checkpoint.

    ``kind`` is ``"diffusers"`` (a folder with unet/ and vae/) or ``"dinov2"`` (one file).
    ``hub_ids[0]`` is the id downloaded; further ids are aliases also looked up in the cache.
    ``local_names`` are the folder (diffusers) or file (dinov2) names looked for in the weights
    folder, in order of preference. ``hub_file`` is the file taken from a dinov2 hub repo.
    """

    name: str
    kind: Literal["diffusers", "dinov2"]
    hub_ids: tuple[str, ...]
    local_names: tuple[str, ...]
    description: str
    timm_name: str | None = None
    hub_file: str | None = None
    official_file: str | None = None

    @property
    def hub_id(self) -> str:
        return self.hub_ids[0]


def _known_table() -> dict[str, KnownWeights]:
    table: dict[str, KnownWeights] = {
        "sd15": KnownWeights(
            "sd15",
            "diffusers",
            ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5"),
            ("stable-diffusion-v1-5",),
            "Stable Diffusion 1.5 (the SD+DINO reference)",
        ),
        "sd21": KnownWeights(
            "sd21",
            "diffusers",
            ("stabilityai/stable-diffusion-2-1",),
            ("stable-diffusion-2-1",),
            "Stable Diffusion 2.1 (768-v; used by DIFT)",
        ),
    }
    sizes = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    for letter, size in sizes.items():
        for reg in (False, True):
            name = f"dinov2_vit{letter}14" + ("_reg" if reg else "")
            timm_name = f"vit_{size}_patch14" + ("_reg4" if reg else "") + "_dinov2.lvd142m"
            official = f"dinov2_vit{letter}14" + ("_reg4" if reg else "") + "_pretrain.pth"
            table[name] = KnownWeights(
                name,
                "dinov2",
                (f"timm/{timm_name}",),
                (f"{timm_name}.safetensors", official),
                f"DINOv2 ViT-{letter.upper()}/14" + (" with 4 registers" if reg else ""),
                timm_name=timm_name,
                hub_file="model.safetensors",
                official_file=official,
            )
    return table


KNOWN_WEIGHTS: dict[str, KnownWeights] = _known_table()

# Files fetched for a diffusers model (one weights file per component, not every variant).
_SD_COMPONENTS = ("unet", "vae")
_SD_TEXT = ("text_encoder", "tokenizer")


def diffusers_allow_patterns(text_encoder: bool = True, variant: str | None = None) -> list[str]:
    """The files ``download`` fetches for a diffusers model (no EMA/bin/duplicate variants)."""
    v = f".{variant}" if variant else ""
    pats = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        f"unet/diffusion_pytorch_model{v}.safetensors",
        "vae/config.json",
        f"vae/diffusion_pytorch_model{v}.safetensors",
    ]
    if text_encoder:
        pats += ["text_encoder/config.json", f"text_encoder/model{v}.safetensors", "tokenizer/*"]
    return pats


# --------------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------------


def weights_dir() -> Path:
    """``$CORR_WEIGHTS_DIR``, else ``<repo>/weights`` when it exists, else ``./weights``."""
    env = os.environ.get("CORR_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    repo_weights = Path(__file__).resolve().parent.parent / "weights"
    if repo_weights.is_dir():
        return repo_weights
    return Path.cwd() / "weights"


def _weights_dir_origin() -> str:
    if os.environ.get("CORR_WEIGHTS_DIR"):
        return "from $CORR_WEIGHTS_DIR"
    if (Path(__file__).resolve().parent.parent / "weights").is_dir():
        return "the repository's weights/ folder"
    return "./weights in the current directory"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HUGGINGFACE_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")),
        "huggingface",
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def torch_hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline_reason() -> str | None:
    """Why downloads are disabled (an env var), or None."""
    for var in ("CORR_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            return f"offline ({var}={os.environ[var]})"
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable_reason(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the hub host opens within ``timeout`` seconds."""
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{host}:{port} unreachable ({type(err).__name__}: {err})"


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
    problems = [p for c in _SD_COMPONENTS if (p := _component_problem(folder, c))]
    return "; ".join(problems) or None


def _weights_file_problem(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    if path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        return f"unsupported file type {path.suffix!r} (want .safetensors or .pth)"
    return None


def weights_format(path: Path) -> str:
    """``"diffusers"``, ``"safetensors"`` or ``"torch"`` (a pickle read with weights_only)."""
    if path.is_dir():
        return "diffusers"
    return "safetensors" if path.suffix == ".safetensors" else "torch"


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
    elif path.suffix in (".pth", ".pt", ".bin"):
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


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@dataclass
class ResolvedWeights:
    """Where the weights were found.

    ``path`` is a diffusers folder or a weights file; ``source`` one of ``"explicit"``,
    ``"weights-folder"``, ``"hf-cache"``, ``"torch-hub-cache"``, ``"hub-download"``;
    ``format`` from :func:`weights_format`.
    """

    request: str
    path: Path
    source: str
    format: str
    known: KnownWeights | None = None
    hub_id: str | None = None

    @property
    def weights_id(self) -> str:
        """An identity for feature caches: ``hub_id@commit`` for hub snapshots, else
        ``name:resolved path:bytes`` of the weight files."""
        parts = self.path.resolve().parts
        if self.hub_id is not None and "snapshots" in parts:
            i = parts.index("snapshots")
            if i + 1 < len(parts):
                return f"{self.hub_id}@{parts[i + 1]}"
        name = self.known.name if self.known is not None else self.request
        return f"{name}:{self.path.resolve()}:{_weights_bytes(self.path)}"


def _weights_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for component in _SD_COMPONENTS:
        for f in sorted((path / component).glob("diffusion_pytorch_model*")):
            total += f.stat().st_size
    return total


@dataclass
class _Search:
    request: str
    looked: list[str] = field(default_factory=list)

    def add(self, place: str, outcome: str) -> None:
        self.looked.append(f"{place}: {outcome}")


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def _how_to(known: KnownWeights | None, kind: str, request: str, wdir: Path) -> list[str]:
    if known is not None and known.kind == "diffusers":
        folder = known.local_names[0]
        return [
            f"on a machine with network: `python -m corr.weights download {known.name}` "
            f"(writes {folder}/ into its weights folder), then copy that folder to {wdir / folder}/",
            f"or copy any diffusers folder of this model (with unet/ and vae/) to {wdir / folder}/",
            f"or pass a local path, e.g. create_extractor('sd', model='/path/to/{folder}')",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if known is not None:
        return [
            f"on a machine with network: `python -m corr.weights download {known.name}`, then copy "
            f"{known.local_names[0]} to {wdir}/",
            f"or copy the official file {known.official_file} "
            f"(https://dl.fbaipublicfiles.com/dinov2/) to {wdir}/",
            "or pass a local path (path=...) to a .safetensors or .pth file",
            "or set CORR_WEIGHTS_DIR to a folder that holds it",
        ]
    if kind == "diffusers":
        return [
            f"copy a diffusers folder (with unet/ and vae/) to {wdir}/{request.split('/')[-1]}/ "
            "or pass its local path",
            f"or, on a machine with network, download hub id {request!r} "
            "(huggingface_hub.snapshot_download) and copy the folder here",
        ]
    return [f"pass a local path to the weights file, or copy it to {wdir}/"]


def _not_found(search: _Search, known: KnownWeights | None, kind: str) -> WeightsNotFoundError:
    wdir = weights_dir()
    what = f"{search.request!r}"
    if known is not None:
        what += f" ({known.description}, hub id {known.hub_id})"
    lines = [f"Weights for {what} were not found. Looked in:"]
    lines += [f"  {i}. {entry}" for i, entry in enumerate(search.looked, 1)]
    lines.append("How to provide them:")
    lines += [f"  - {h}" for h in _how_to(known, kind, search.request, wdir)]
    lines.append(
        "Random weights are never substituted; pretrained=False builds the architecture with "
        "random weights explicitly (for benchmarks)."
    )
    return WeightsNotFoundError("\n".join(lines))


def _hf_snapshot(repo_id: str, patterns: list[str], local_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id,
            allow_patterns=patterns,
            cache_dir=str(hf_cache_dir()),
            local_files_only=local_only,
        )
    )


def _hf_file(repo_id: str, filename: str, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if local_only:
        return Path(
            hf_hub_download(repo_id, filename, cache_dir=str(hf_cache_dir()), local_files_only=True)
        )
    # snapshot_download fails at once on a connection error (hf_hub_download retries ~20 s)
    folder = snapshot_download(repo_id, allow_patterns=[filename], cache_dir=str(hf_cache_dir()))
    return Path(folder) / filename


def _err_text(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def resolve(
    name_or_path: str | os.PathLike,
    *,
    path: str | os.PathLike | None = None,
    kind: Literal["diffusers", "dinov2"] | None = None,
    allow_download: bool | None = None,
    text_encoder: bool = True,
) -> ResolvedWeights:
    """Find real weights for a known name (``"sd15"``, ``"dinov2_vitb14"``, ...), a hub id or a
    local path; raise :class:`WeightsNotFoundError` naming every place looked.

    ``path`` is an explicit local path that takes precedence (when given and unusable, the
    search stops there). ``allow_download=None`` downloads unless ``HF_HUB_OFFLINE=1`` or
    ``CORR_OFFLINE=1``; ``False`` never downloads. ``text_encoder`` adds the text encoder and
    tokenizer to a diffusers download.
    """
    request = str(name_or_path)
    known = KNOWN_WEIGHTS.get(request)
    if kind is None:
        kind = known.kind if known is not None else "diffusers"
    search = _Search(request)

    # 1. explicit path (argument, or the request itself when it is an existing path)
    explicit = Path(path).expanduser() if path is not None else None
    if explicit is None and known is None:
        candidate = Path(request).expanduser()
        if candidate.exists() or not _looks_like_hub_id(request):
            explicit = candidate
    if explicit is not None:
        problem = (
            diffusers_folder_problem(explicit)
            if kind == "diffusers"
            else _weights_file_problem(explicit)
        )
        if problem is None:
            return ResolvedWeights(request, explicit, "explicit", weights_format(explicit), known)
        search.add(f"explicit path {explicit}", problem)
        search.add("other places", "not consulted because an explicit path was given")
        raise _not_found(search, known, kind)
    search.add("explicit path", "none given")

    # 2. weights folder
    wdir = weights_dir()
    if known is not None:
        local_names = list(known.local_names)
    else:  # an unknown hub id: weights/<repo name>/
        local_names = [request.split("/")[-1]]
    for local in local_names:
        cand = wdir / local
        problem = (
            diffusers_folder_problem(cand) if kind == "diffusers" else _weights_file_problem(cand)
        )
        if problem is None:
            return ResolvedWeights(request, cand, "weights-folder", weights_format(cand), known)
        search.add(f"weights folder ({_weights_dir_origin()}) {cand}", problem)

    hub_ids = list(known.hub_ids) if known is not None else [request]
    patterns = diffusers_allow_patterns(text_encoder=text_encoder)
    cache = hf_cache_dir()

    # 3. caches
    for hub_id in hub_ids:
        try:
            if kind == "diffusers":
                snap = _hf_snapshot(hub_id, patterns, local_only=True)
                problem = diffusers_folder_problem(snap)
                if problem is None:
                    return ResolvedWeights(request, snap, "hf-cache", "diffusers", known, hub_id)
                search.add(
                    f"Hugging Face cache {cache} ({hub_id})", f"incomplete snapshot: {problem}"
                )
            else:
                hub_file = known.hub_file if known is not None else "model.safetensors"
                f = _hf_file(hub_id, hub_file, local_only=True)
                return ResolvedWeights(request, f, "hf-cache", weights_format(f), known, hub_id)
        except FileNotFoundError:  # huggingface_hub's LocalEntryNotFoundError
            search.add(f"Hugging Face cache {cache} ({hub_id})", "not cached")
        except Exception as err:  # HFValidationError, a broken cache, ...
            search.add(f"Hugging Face cache {cache} ({hub_id})", f"not usable ({_err_text(err)})")
    if known is not None and known.official_file:
        cand = torch_hub_checkpoints_dir() / known.official_file
        if cand.is_file():
            return ResolvedWeights(request, cand, "torch-hub-cache", "torch", known)
        search.add(f"torch hub cache {cand}", "does not exist")

    # 4. download
    hub_id = hub_ids[0]
    reason = offline_reason()
    if allow_download is False:
        reason = "downloads disabled by the caller (allow_download=False)"
    if reason is None:
        reason = hub_unreachable_reason()
    if reason is not None:
        search.add(f"Hugging Face Hub {hub_endpoint()}/{hub_id}", f"download skipped: {reason}")
        raise _not_found(search, known, kind)
    try:
        if kind == "diffusers":
            snap = _hf_snapshot(hub_id, patterns, local_only=False)
            problem = diffusers_folder_problem(snap)
            if problem is None:
                return ResolvedWeights(request, snap, "hub-download", "diffusers", known, hub_id)
            search.add(f"Hugging Face Hub {hub_id}", f"downloaded snapshot incomplete: {problem}")
        else:
            hub_file = known.hub_file if known is not None else "model.safetensors"
            f = _hf_file(hub_id, hub_file, local_only=False)
            return ResolvedWeights(request, f, "hub-download", weights_format(f), known, hub_id)
    except Exception as err:
        search.add(
            f"Hugging Face Hub {hub_endpoint()}/{hub_id}", f"download failed ({_err_text(err)})"
        )
    raise _not_found(search, known, kind)


# --------------------------------------------------------------------------------------------
# Download into the weights folder
# --------------------------------------------------------------------------------------------


class DownloadError(RuntimeError):
    pass


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
    reason = offline_reason() or hub_unreachable_reason()
    if reason is not None:
        raise DownloadError(
            f"cannot download {name} ({known.hub_id}): {reason}. Run "
            f"`python -m corr.weights download {name}` on a machine with network and copy "
            f"{_display(known)} into {wdir}/ here (or set CORR_WEIGHTS_DIR)."
        )
    from huggingface_hub import hf_hub_download, snapshot_download

    wdir.mkdir(parents=True, exist_ok=True)
    try:
        if known.kind == "diffusers":
            snapshot_download(
                known.hub_id,
                allow_patterns=diffusers_allow_patterns(text_encoder, variant),
                local_dir=str(target),
            )
            problem = diffusers_folder_problem(target)
            if problem:
                raise DownloadError(f"downloaded {known.hub_id} into {target} but: {problem}")
        else:
            with tempfile.TemporaryDirectory(dir=wdir) as tmp:
                f = hf_hub_download(known.hub_id, known.hub_file, local_dir=tmp)
                shutil.move(f, target)
    except DownloadError:
        raise
    except Exception as err:
        raise DownloadError(
            f"download of {name} ({known.hub_id}) failed: {_err_text(err)}. On a machine with "
            f"network run `python -m corr.weights download {name}` and copy "
            f"{_display(known)} into {wdir}/ here."
        ) from err
    return target


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _present(known: KnownWeights, wdir: Path) -> tuple[str | None, list[str]]:
    looked = []
    for local in known.local_names:
        cand = wdir / local
        problem = (
            diffusers_folder_problem(cand)
            if known.kind == "diffusers"
            else _weights_file_problem(cand)
        )
        if problem is None:
            return str(cand), looked
        looked.append(local + ("/" if known.kind == "diffusers" else ""))
    return None, looked


def _cmd_list() -> int:
    wdir = weights_dir()
    print(f"weights folder: {wdir} ({_weights_dir_origin()}; set CORR_WEIGHTS_DIR to change)")
    print(f"Hugging Face cache: {hf_cache_dir()}")
    width = max(len(n) for n in KNOWN_WEIGHTS)
    for name, known in KNOWN_WEIGHTS.items():
        found, looked = _present(known, wdir)
        if found:
            print(f"  {name:<{width}}  present   {found}")
        else:
            print(
                f"  {name:<{width}}  missing   looked for {' or '.join(looked)}  (hub: {known.hub_id})"
            )
    print("Get one with: python -m corr.weights download NAME  (needs network)")
    return 0


def _cmd_download(
    names: Sequence[str], dest: str | None, text_encoder: bool, variant: str | None
) -> int:
    unknown = [n for n in names if n not in KNOWN_WEIGHTS]
    if unknown:
        print(
            f"unknown name(s): {', '.join(unknown)}; known: {', '.join(KNOWN_WEIGHTS)}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in names:
        try:
            path = download(name, dest, text_encoder=text_encoder, variant=variant)
        except DownloadError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: {path}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    from .logs import setup_cli_logging

    setup_cli_logging()
    parser = argparse.ArgumentParser(
        prog="python -m corr.weights", description="List or download the model weights corr uses."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="show which known weights are present in the weights folder")
    dl = sub.add_parser("download", help="download known weights into the weights folder")
    dl.add_argument("names", nargs="+", metavar="NAME", help=", ".join(KNOWN_WEIGHTS))
    dl.add_argument("--dir", default=None, help="target folder (default: the weights folder)")
    dl.add_argument(
        "--no-text-encoder",
        action="store_true",
        help="skip the SD text encoder/tokenizer (only needed for non-empty prompts)",
    )
    dl.add_argument("--variant", default=None, help="diffusers weights variant, e.g. fp16")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        return _cmd_list()
    return _cmd_download(args.names, args.dir, not args.no_text_encoder, args.variant)


if __name__ == "__main__":
    sys.exit(main())
