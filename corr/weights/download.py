"""Downloading known weights into the weights folder: :func:`download`.

A diffusers model is fetched as the files of
:func:`~corr.weights.registry.diffusers_allow_patterns` (UNet, VAE, scheduler config, and the
text encoder + tokenizer unless ``text_encoder=False``) into ``weights/<folder>/``; a DINOv2
checkpoint as its one ``.safetensors`` file. Without network (an offline flag, or the hub host
not answering) :class:`DownloadError` says how to copy the weights from another machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .files import diffusers_folder_problem
from .places import hub_unreachable_reason, offline_reason, weights_dir
from .registry import KNOWN_WEIGHTS, KnownWeights, diffusers_allow_patterns
from .resolve import error_text


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
            f"download of {name} ({known.hub_id}) failed: {error_text(err)}. On a machine with "
            f"network run `python -m corr.weights download {name}` and copy "
            f"{_display(known)} into {wdir}/ here."
        ) from err
    return target
