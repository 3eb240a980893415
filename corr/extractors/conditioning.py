"""The text conditioning of the Stable Diffusion UNet: prompts, the CLIP text encoder.

``prompt=""`` (the SD extractor's default) conditions on a **zero tensor** of shape
``(1, 77, cross_attention_dim)`` and loads no text encoder (:func:`zero_conditioning`). This is
a deliberate choice: it is cheap and deterministic, but it is not the CLIP embedding of the
empty caption (the reference used ODISE's learned implicit caption, which is not part of SD).
A non-empty prompt, e.g. ``"a photo of a {category}"`` (``{category}`` filled from
``extract(..., category=)``, :func:`fill_prompt`), is encoded with the model's CLIP text
encoder + tokenizer (``transformers``, :func:`encode_prompt`), loaded from the same model
folder on first use (:func:`load_text_encoder`); ``prompt=" "`` gives the CLIP embedding of
the empty caption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..weights import WeightsNotFoundError
from .sd_layers import as_tensor


def cross_attention_dim(unet: nn.Module) -> int:
    """The width of the UNet's encoder hidden states (768 for SD 1.5, 1024 for SD 2.1)."""
    dim = unet.config.cross_attention_dim
    return int(dim[0] if isinstance(dim, (list, tuple)) else dim)


def zero_conditioning(
    unet: nn.Module, device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """The conditioning of ``prompt=""``: zeros ``(1, 77, cross_attention_dim)``."""
    return torch.zeros(1, 77, cross_attention_dim(unet), device=device, dtype=dtype)


def fill_prompt(prompt: str, category: str | None) -> str:
    """``prompt`` with ``{category}`` replaced by ``category`` (required when it is there)."""
    if "{category}" in prompt:
        if category is None:
            raise ValueError(f"prompt {prompt!r} needs a category: pass category=")
        return prompt.replace("{category}", category)
    return prompt


def load_text_encoder(
    text_source: str | Path | None, prompt: str, device: torch.device | str
) -> tuple[Any, nn.Module]:
    """``(tokenizer, text encoder)`` from the ``tokenizer/`` and ``text_encoder/`` subfolders
    of the diffusers folder ``text_source`` (local files only), the encoder moved to ``device``.
    ``prompt`` is the prompt that needs them, named in the errors."""
    if text_source is None:
        raise ValueError(
            f"prompt {prompt!r} needs a CLIP text encoder, but this SD model has none "
            "(random or tiny weights, or built from objects): pass text_encoder= and "
            "tokenizer=, or use prompt='' (zero conditioning)"
        )
    folder = Path(text_source)
    missing = [s for s in ("text_encoder", "tokenizer") if not (folder / s).is_dir()]
    if missing:
        raise WeightsNotFoundError(
            f"prompt {prompt!r} needs {' and '.join(m + '/' for m in missing)} in {folder}; "
            "download them with `python -m corr.weights download NAME` (includes the text "
            "encoder unless --no-text-encoder), or use prompt='' (zero conditioning)"
        )
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as err:
        raise ImportError(
            f"a non-empty prompt ({prompt!r}) needs the `transformers` package for the CLIP "
            "text encoder: pip install transformers (or use prompt='')"
        ) from err
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(
        folder, subfolder="text_encoder", local_files_only=True
    ).to(device)
    return tokenizer, encoder


@torch.no_grad()
def encode_prompt(text: str, tokenizer: Any, text_encoder: nn.Module) -> torch.Tensor:
    """The encoder hidden states of ``text``: ``(1, model_max_length, D)`` float32 on the CPU
    (the tokens padded to the tokenizer's ``model_max_length``, 77 for CLIP)."""
    text_encoder.eval().requires_grad_(False)
    device = next(text_encoder.parameters()).device
    ids = tokenizer(
        text,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    out = text_encoder(ids.to(device))
    hidden = as_tensor(out if not hasattr(out, "last_hidden_state") else out.last_hidden_state)
    return hidden.float().cpu()
