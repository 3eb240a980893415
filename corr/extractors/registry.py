"""One registry of extractor names, in the style of ``timm.create_model``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..protocols import Protocol, extractor_knobs
from .base import Extractor

_REGISTRY: dict[str, Callable[..., Extractor]] = {}
_DOCS: dict[str, str] = {}


def register_extractor(name: str, factory: Callable[..., Extractor] | None = None, doc: str = ""):
    """Register ``factory(pretrained: bool, **kwargs) -> Extractor`` under ``name``.

    Usable as a decorator (``@register_extractor("my-net")``) or a call.
    """

    def _add(fn: Callable[..., Extractor]) -> Callable[..., Extractor]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"an extractor named {name!r} is already registered")
        _REGISTRY[name] = fn
        lines = (fn.__doc__ or "").strip().splitlines()
        _DOCS[name] = doc or (lines[0] if lines else "")
        return fn

    return _add(factory) if factory is not None else _add


def list_extractors() -> list[str]:
    """The registered extractor names, sorted."""
    return sorted(_REGISTRY)


def describe_extractors() -> dict[str, str]:
    """Registered name -> one-line description."""
    return {n: _DOCS.get(n, "") for n in list_extractors()}


class ExtractorSpecError(ValueError):
    """A ``"module:factory"`` spec that names no factory, or a factory that returns no extractor."""


def load_factory(spec: str) -> Callable[..., Extractor]:
    """``"package.module:factory"`` -> the callable it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"extractor spec {spec!r} must look like 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"extractor {spec!r}: cannot import module {module_name!r}: {err}"
        ) from err
    factory = getattr(module, attr, None)
    if factory is None:
        raise ExtractorSpecError(
            f"extractor {spec!r}: module {module_name!r} has no attribute {attr!r}"
        )
    if not callable(factory):
        raise ExtractorSpecError(
            f"extractor {spec!r}: {attr!r} is a {type(factory).__name__}, not a factory function"
        )
    return factory


def create_extractor(name: str, pretrained: bool = True, **kwargs) -> Extractor:
    """Build a registered extractor by name, any timm backbone from ``"timm/<model name>"``
    (:mod:`corr.extractors.timm_backbone`; ``out_indices=`` picks the stages), or a custom one
    from ``"module:factory"``.

    ``pretrained=True`` loads real weights and raises :class:`corr.weights.WeightsNotFoundError`
    when they cannot be found; it never falls back to random weights. Extra keyword arguments
    go to the factory (``input_size``, ``dtype``, ``layers``, ...).
    """
    from .timm_backbone import is_timm_name, timm_extractor

    if is_timm_name(name):  # "timm/<name>" or "hf-hub:<repo>", before the ':' of module:factory
        ext = timm_extractor(name, pretrained=pretrained, **kwargs)
    elif ":" in name:
        ext = load_factory(name)(pretrained=pretrained, **kwargs)
    else:
        if name not in _REGISTRY:
            raise KeyError(
                f"unknown extractor {name!r}; registered: {', '.join(list_extractors())}; "
                "or give a custom one as 'package.module:factory'"
            )
        ext = _REGISTRY[name](pretrained=pretrained, **kwargs)
    if not isinstance(ext, Extractor):
        raise ExtractorSpecError(
            f"extractor factory {name!r} returned {type(ext).__name__}, not a corr Extractor"
        )
    return ext


def build_extractors(
    specs: Sequence[str | Extractor],
    weights: Sequence[float],
    *,
    protocol: Protocol,
    pretrained: bool = True,
    options: dict[str, dict[str, Any]] | None = None,
    dtype: str | torch.dtype | None = None,
    device: torch.device | None = None,
    default_device: torch.device | None = None,
    autocast: str | torch.dtype | None = None,
    compile: bool = False,
) -> list[tuple[Extractor, float]]:
    """The extractors of a :class:`corr.Matcher`, in eval mode, with their fusion weights.

    Names and ``module:factory`` specs are built with ``protocol``'s factory options
    (:func:`corr.protocols.extractor_knobs`), then ``options[name]`` and ``dtype``, and go to
    ``device`` (else ``default_device``); :class:`Extractor` objects stay where they are unless
    ``device`` is given. An extractor of weight 0 is not built (alpha 0 or 1: the other model
    alone). ``autocast`` turns mixed precision on; ``compile`` wraps ``extract`` in
    ``torch.compile`` (the same features to float rounding; a compilation per input shape).
    """
    options = options or {}
    out = []
    for spec, w in zip(specs, weights, strict=True):
        if w == 0:
            continue
        if isinstance(spec, Extractor):
            ext = spec.to(device) if device is not None else spec
        else:
            kwargs = {**extractor_knobs(protocol, spec), **options.get(spec, {})}
            if dtype is not None:
                kwargs.setdefault("dtype", dtype)
            ext = create_extractor(spec, pretrained=pretrained, **kwargs)
            ext.resample = protocol.resample
            ext = ext.to(device if device is not None else default_device)
        ext = ext.eval()
        if autocast is not None:
            ext.set_autocast(autocast)
        if compile:
            ext.extract = torch.compile(ext.extract)
        out.append((ext, float(w)))
    return out
