"""Where weights are looked for, and whether the hub can be reached.

The weights folder (``$CORR_WEIGHTS_DIR``, else ``weights/`` at the repository root when it
exists, else ``./weights``), the Hugging Face hub cache, the torch hub checkpoint folder, the
hub endpoint, and the two reasons a download is not tried: an offline flag in the environment
(:func:`offline_reason`) or a hub host that does not answer a 3 s TCP probe
(:func:`hub_unreachable_reason`). Everything is read from the environment at call time.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

_TRUE = {"1", "ON", "YES", "TRUE"}
PROBE_TIMEOUT_S = 3.0


def _repository_weights() -> Path:
    """``weights/`` at the repository root: the parent of the ``corr`` package folder."""
    return Path(__file__).resolve().parents[2] / "weights"


def weights_dir() -> Path:
    """``$CORR_WEIGHTS_DIR``, else ``<repo>/weights`` when it exists, else ``./weights``."""
    env = os.environ.get("CORR_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    repo_weights = _repository_weights()
    if repo_weights.is_dir():
        return repo_weights
    return Path.cwd() / "weights"


def weights_dir_origin() -> str:
    """Why :func:`weights_dir` is where it is, in words (for messages)."""
    if os.environ.get("CORR_WEIGHTS_DIR"):
        return "from $CORR_WEIGHTS_DIR"
    if _repository_weights().is_dir():
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
    """Where ``torch.hub`` keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline_reason() -> str | None:
    """Why downloads are disabled (an env var), or None."""
    for var in ("CORR_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            return f"offline ({var}={os.environ[var]})"
    return None


def hub_endpoint() -> str:
    """The Hugging Face Hub URL (``$HF_ENDPOINT``, default ``https://huggingface.co``)."""
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
