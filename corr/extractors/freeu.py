"""FreeU on the Stable Diffusion UNet decoder, by diffusers' rule or by GeoAware-SC's.

FreeU acts before a decoder layer, on its input ``cat([h, skip])``: the first half of the
backbone channels of ``h`` times ``b``, and the skip features' lowest spatial frequencies
times ``s`` (:func:`freeu_layer`). The two rules differ in which layers get stage 1 (b1/s1)
and stage 2 (b2/s2) (:func:`freeu_stages`): ``"diffusers"`` (``enable_freeu``) by up-block
index, ``"geoaware"`` (GeoAware-SC's ODISE ``ldm.py``) by the channel count of ``h``.
:func:`freeu_applied` applies a rule to a UNet for one forward pass and undoes it afterwards;
:func:`scale_backbone_inplace` repeats FreeU's in-place backbone scaling on captured maps.
Default factors: GeoAware's ``FREEU_GEOAWARE`` (s1 0.9, s2 0.2, b1 1.2, b2 1.4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .sd_layers import decoder_channels

FREEU_GEOAWARE = {"s1": 0.9, "s2": 0.2, "b1": 1.2, "b2": 1.4}
FREEU_RULES = ("diffusers", "geoaware")
#: the factors a ``freeu_params`` dict must hold
FREEU_KEYS = ("s1", "s2", "b1", "b2")
_MISSING = object()


def parse_freeu(value: bool | str | None) -> str | None:
    """The FreeU rule of a ``freeu=`` value: None (off), ``"diffusers"`` or ``"geoaware"``.

    ``False``/``None``/``"off"``/``"none"``/``""`` are off; ``True`` is ``"diffusers"`` (its
    meaning before the rules existed)."""
    if value is None or value is False:
        return None
    if value is True:
        return "diffusers"
    key = str(value).strip().lower()
    if key in ("", "off", "none", "false", "0"):
        return None
    if key in ("true", "1", "on"):
        return "diffusers"
    if key not in FREEU_RULES:
        raise ValueError(f"freeu must be False, True or one of {FREEU_RULES}, got {value!r}")
    return key


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """FreeU's skip filter: multiply the ``2 threshold x 2 threshold`` lowest spatial
    frequencies (centred spectrum, around ``(H // 2, W // 2)``) of ``x`` ``(..., H, W)`` by
    ``scale``. Computed in float32 (float64 stays float64) and returned in ``x``'s dtype; in
    float32 this equals diffusers' ``fourier_filter`` and GeoAware's ``Fourier_filter`` bit for
    bit."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    dims = (-2, -1)
    spec = torch.fft.fftshift(torch.fft.fftn(work, dim=dims), dim=dims)
    cy, cx = spec.shape[-2] // 2, spec.shape[-1] // 2
    low = (..., slice(cy - threshold, cy + threshold), slice(cx - threshold, cx + threshold))
    spec[low] = spec[low] * scale
    out = torch.fft.ifftn(torch.fft.ifftshift(spec, dim=dims), dim=dims).real
    return out.to(x.dtype)


def freeu_layer(
    h: torch.Tensor, skip: torch.Tensor, b: float, s: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FreeU step before a decoder layer (out of place): the first half of the backbone
    channels of ``h`` times ``b``, the skip features through :func:`fourier_filter` with
    threshold 1 and ``scale=s``."""
    half = h.shape[1] // 2
    scaled = torch.cat([h[:, :half] * b, h[:, half:]], dim=1)
    return scaled, fourier_filter(skip, threshold=1, scale=s)


def _unet_config(unet_or_config: Any) -> dict[str, Any]:
    cfg = getattr(unet_or_config, "config", unet_or_config)
    return dict(cfg)


def geoaware_freeu_channels(unet_or_config: Any) -> tuple[int, int | None]:
    """The backbone widths GeoAware's channel rule keys on: ``(b1/s1 width, b2/s2 width)``.

    The reference hard-codes 1280 and 640, SD 1.x/2.x's two largest distinct
    ``block_out_channels``; for other models the two largest distinct widths are used (the
    second is None when all blocks have one width)."""
    widths = sorted({int(c) for c in _unet_config(unet_or_config)["block_out_channels"]})[::-1]
    return widths[0], (widths[1] if len(widths) > 1 else None)


def geoaware_freeu_stage(channels: int, widths: tuple[int, int | None]) -> int | None:
    """GeoAware's rule for one decoder layer: 1 (b1/s1) when its input ``h`` has ``widths[0]``
    channels, 2 (b2/s2) when it has ``widths[1]``, else None (untouched)."""
    if channels == widths[0]:
        return 1
    if widths[1] is not None and channels == widths[1]:
        return 2
    return None


def freeu_stages(unet: nn.Module, rule: str | None) -> dict[int, int]:
    """``{decoder layer: stage}`` for the layers FreeU acts on under ``rule`` (stage 1 uses
    b1/s1, stage 2 b2/s2). ``"diffusers"``: every layer of the up blocks with
    ``resolution_idx`` 0 / 1 (SD: layers 0-2 / 3-5). ``"geoaware"``: by the channel count of
    the layer's input h (SD: 1280 -> layers 0-6, 640 -> layers 7-9)."""
    rule = parse_freeu(rule)
    if rule is None:
        return {}
    stages: dict[int, int] = {}
    if rule == "diffusers":
        layer = 0
        for b, blk in enumerate(unet.up_blocks):
            idx = getattr(blk, "resolution_idx", None)
            idx = b if idx is None else idx
            for _ in blk.resnets:
                if idx in (0, 1):
                    stages[layer] = idx + 1
                layer += 1
        return stages
    widths = geoaware_freeu_channels(unet)
    for layer, (c_h, _) in enumerate(decoder_channels(unet)):
        stage = geoaware_freeu_stage(c_h, widths)
        if stage is not None:
            stages[layer] = stage
    return stages


# --------------------------------------------------------------------------------------------
# Applying a rule to a UNet
# --------------------------------------------------------------------------------------------


def _freeu_pre_hook(c_h: int, b: float, s: float):
    """A forward pre-hook for a decoder resnet: FreeU on its input ``cat([h, skip])``."""

    def hook(module, args, kwargs):
        if args:
            x, rest = args[0], args[1:]
        else:
            x, rest = kwargs.pop("input_tensor"), ()
        if x.shape[1] != getattr(module, "in_channels", x.shape[1]) or x.shape[1] <= c_h:
            raise RuntimeError(f"FreeU: unexpected decoder input of {x.shape[1]} channels")
        h, skip = freeu_layer(x[:, :c_h], x[:, c_h:].contiguous(), b, s)
        x = torch.cat([h, skip], dim=1)
        if args:
            return (x, *rest), kwargs
        kwargs["input_tensor"] = x
        return args, kwargs

    return hook


def geoaware_hooks(
    unet: nn.Module, stages: Mapping[int, int], params: Mapping[str, float]
) -> list[Any]:
    """Forward pre-hooks applying GeoAware's FreeU rule to the inputs of the decoder resnets
    of ``stages`` (from :func:`freeu_stages`); returns their removable handles."""
    channels = decoder_channels(unet)
    resnets = [r for blk in unet.up_blocks for r in blk.resnets]
    handles = []
    for layer, stage in sorted(stages.items()):
        b, s = params[f"b{stage}"], params[f"s{stage}"]
        hook = _freeu_pre_hook(channels[layer][0], b, s)
        handles.append(resnets[layer].register_forward_pre_hook(hook, with_kwargs=True))
    return handles


def _suspend_freeu(unet: nn.Module) -> list[dict[str, Any]]:
    """Clear diffusers' FreeU attributes on the up blocks; returns them for :func:`_resume_freeu`."""
    saved = []
    for blk in unet.up_blocks:
        saved.append({k: getattr(blk, k, _MISSING) for k in FREEU_KEYS})
        for k in FREEU_KEYS:
            if hasattr(blk, k):
                setattr(blk, k, None)
    return saved


def _resume_freeu(unet: nn.Module, saved: list[dict[str, Any]]) -> None:
    for blk, attrs in zip(unet.up_blocks, saved, strict=True):
        for k, v in attrs.items():
            if v is _MISSING:
                if k in blk.__dict__:
                    delattr(blk, k)
            else:
                setattr(blk, k, v)


@contextmanager
def freeu_applied(
    unet: nn.Module,
    rule: str | None,
    params: Mapping[str, float],
    stages: Mapping[int, int],
) -> Iterator[None]:
    """FreeU under ``rule`` (None: off) on ``unet`` for the duration of the block, and only it:
    diffusers' FreeU attributes already set on the up blocks are suspended first. ``"diffusers"``
    sets them with ``enable_freeu(**params)``; ``"geoaware"`` adds :func:`geoaware_hooks` for
    ``stages``. On exit the hooks are removed and the suspended attributes restored."""
    saved = _suspend_freeu(unet)
    handles: list[Any] = []
    try:
        if rule == "diffusers":
            unet.enable_freeu(**{k: params[k] for k in FREEU_KEYS})
        elif rule == "geoaware":
            handles = geoaware_hooks(unet, stages, params)
        yield
    finally:
        for h in handles:
            h.remove()
        _resume_freeu(unet, saved)


def scale_backbone_inplace(
    maps: Mapping[int, torch.Tensor], stages: Mapping[int, int], params: Mapping[str, float]
) -> None:
    """FreeU's backbone scaling of the input of each FreeU layer, in place (as FreeU does to
    ``h``): for each ``{layer: (B, C, h, w)}`` map whose layer has a stage, the first half of
    its channels times ``b{stage}``; other maps are left alone."""
    for layer, h in maps.items():
        stage = stages.get(layer)
        if stage is None:
            continue
        factor = params[f"b{stage}"]
        half = h.shape[1] // 2
        h[:, :half] = h[:, :half] * factor
