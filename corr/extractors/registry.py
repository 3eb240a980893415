"""One registry of extractor names, in the style of ``timm.create_model``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ..protocols import Protocol, extractor_knobs
from ..weights.missing import WeightsNeed, missing_weights_error
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


def register_named(
    names: Iterable[str],
    make: Callable[..., Extractor],
    doc: Callable[[str], str],
    namespace: dict[str, Any],
) -> None:
    """Register one factory per name of a family (``dinov2_vitb14``, ...): ``name(pretrained=True,
    **kwargs)`` calls ``make(name, pretrained, **kwargs)``, carries ``doc(name)`` as its
    docstring and is also bound in ``namespace`` (the defining module's ``globals()``), so
    ``from corr.extractors.dino import dinov2_vitb14`` works."""

    def one(name: str) -> Callable[..., Extractor]:
        def factory(pretrained: bool = True, **kwargs: Any) -> Extractor:
            return make(name, pretrained, **kwargs)

        factory.__name__ = factory.__qualname__ = name
        factory.__doc__ = doc(name)
        return factory

    for name in names:
        namespace[name] = register_extractor(name, one(name))


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
    params = _parameters(factory)
    if params is not None and "pretrained" not in params and "**" not in params:
        raise ExtractorSpecError(
            f"extractor {spec!r}: {attr}() takes no 'pretrained' argument, so it is not an "
            "extractor factory (one is called as factory(pretrained=..., **options) and returns "
            "a corr Extractor; see corr.contrib.mobilenet:mobilenetv2)"
        )
    return factory


def _parameters(fn: Callable[..., Any]) -> set[str] | None:
    """The keyword names ``fn`` accepts (``"**"`` when it takes ``**kwargs``); None when its
    signature cannot be read (a builtin)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = set()
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            names.add("**")
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names


def _check_options(name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse options a custom factory does not take, naming them (instead of a TypeError)."""
    params = _parameters(factory)
    if params is None or "**" in params:
        return
    unknown = sorted(set(kwargs) - params)
    if unknown:
        raise ExtractorSpecError(
            f"extractor {name!r} takes no option(s) {', '.join(unknown)} (its parameters: "
            f"{', '.join(sorted(params)) or 'none'})"
        )


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
        factory = load_factory(name)
        _check_options(name, factory, kwargs)
        ext = factory(pretrained=pretrained, **kwargs)
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


def factory_options(
    spec: str,
    protocol: Protocol,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    dtype: str | torch.dtype | None = None,
) -> dict[str, Any]:
    """The keyword arguments the factory of ``spec`` is called with: ``protocol``'s knobs
    (:func:`corr.protocols.extractor_knobs`), then ``options[spec]``, then ``dtype``."""
    kwargs = {**extractor_knobs(protocol, spec), **(options or {}).get(spec, {})}
    if dtype is not None:
        kwargs.setdefault("dtype", dtype)
    return kwargs


def required_weights(spec: str, kwargs: Mapping[str, Any]) -> list[WeightsNeed]:
    """The weights building the registered extractor ``spec`` with factory options ``kwargs``
    resolves (SD 1.5 / 2.1, a diffusers folder or hub id for ``"sd"``, the DINOv2 and DINOv3
    files, CleanDIFT's UNet file and its SD base folder); empty for the tiny test models and
    for what is only known when built (``timm/...``, ``module:factory``)."""
    from ..weights import KNOWN_WEIGHTS

    path = kwargs.get("path")
    path = None if path is None else str(path)
    known = KNOWN_WEIGHTS.get(spec)
    if spec in _REGISTRY and known is not None and known.kind == "unet-file" and known.base:
        base_path = kwargs.get("base_path")
        return [
            WeightsNeed(known.base, None if base_path is None else str(base_path), "diffusers"),
            WeightsNeed(spec, path, known.kind),
        ]
    if spec in _REGISTRY and known is not None and known.kind in ("diffusers", "dinov2", "dinov3"):
        return [WeightsNeed(spec, path, known.kind)]
    if spec == "sd" and kwargs.get("model"):
        return [WeightsNeed(str(kwargs["model"]), path, "diffusers")]
    return []


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

    With ``pretrained=True`` the weights of every extractor are looked up before any is built:
    when some are missing, one :class:`~corr.weights.WeightsNotFoundError` names all of them
    and the command that gets them (:func:`corr.weights.missing.weights_problems`).
    """
    wanted = [(s, w) for s, w in zip(specs, weights, strict=True) if w != 0]
    if pretrained:
        needs = [
            need
            for spec, _ in wanted
            if isinstance(spec, str)
            for need in required_weights(spec, factory_options(spec, protocol, options, dtype))
        ]
        error = missing_weights_error(needs)
        if error is not None:
            raise error
    out = []
    for spec, w in wanted:
        if isinstance(spec, Extractor):
            ext = spec.to(device) if device is not None else spec
        else:
            kwargs = factory_options(spec, protocol, options, dtype)
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
