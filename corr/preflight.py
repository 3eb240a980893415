"""Everything a run needs, checked at once before any model is loaded: :func:`preflight`.

A command that would load gigabytes of models and then stop on the next missing piece (the
data, one weights file, then the next one, then a package) instead lists every problem in one
:class:`PreflightError`, each with the command that fixes it::

    this run cannot start (4 problems; nothing was loaded):
      - SPair-71k: not found: /data/SPair-71k ...
      - weights sd15 (Stable Diffusion 1.5 ...) were not found; looked in: ...
      - weights dinov2_vitb14 (DINOv2 ViT-B/14) were not found; looked in: ...
      - prompt 'a photo of a {category}' (sd15) needs the transformers package
    to fix them:
      python -m corr.weights download sd15 dinov2_vitb14 (needs network; ...)
      pip install "semcorr[text]"

What is checked: the data (a function of the caller that loads and checks it; its errors are
problems), every extractor name (registered, ``timm/...`` or a ``module:factory`` that is a
factory), the weights every extractor resolves (:func:`corr.weights.resolve` without
downloading; weights the hub can still provide are not a problem when it is reachable), the
SD text encoder and the ``transformers`` package for a non-empty prompt, ``xformers`` when
asked for, and optional packages a caller names (``extras``: ``"warp"`` needs OpenCV).
Nothing is loaded: no weights file is opened and no model is built.

:class:`corr.Matcher` runs the weights part (:func:`corr.weights.missing.missing_weights_error`)
before it builds any extractor, so a missing model is named together with every other missing
one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .extractors.registry import (
    factory_options,
    list_extractors,
    load_factory,
    required_weights,
)
from .protocols import Protocol, get_protocol
from .weights import (
    KNOWN_WEIGHTS,
    WeightsNotFoundError,
    resolve,
    weights_dir,
)
from .weights.missing import Problem, WeightsNeed, format_problems, weights_problems

T = TypeVar("T")

#: optional features -> (the module they import, the extra of ``pip install "semcorr[...]"``)
EXTRAS: dict[str, tuple[str, str]] = {
    "text": ("transformers", "text"),
    "xformers": ("xformers", "xformers"),
    "warp": ("cv2", "warp"),
    "coseg": ("sklearn", "coseg"),
    "app": ("gradio", "app"),
}


class PreflightError(Exception):
    """A run cannot start: :attr:`problems` lists everything missing, each with its fix.

    The message is the one problem as it was raised when there is one, else a list of them and
    of the commands that fix them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(format_problems(self.problems, "this run cannot start"))


def module_available(name: str) -> bool:
    """Whether ``import name`` would find the module (nothing is imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def adapter_problems(adapter: str) -> list[Problem]:
    """A :class:`Problem` when a supervised adapter (registered name or path) is not there."""
    if adapter in KNOWN_WEIGHTS:
        try:
            resolve(adapter, allow_download=False)
        except WeightsNotFoundError:
            return [
                Problem(
                    f"adapter {adapter} ({KNOWN_WEIGHTS[adapter].description}) is not in the "
                    f"weights folder {weights_dir()}",
                    f"python -m corr.weights download {adapter} (needs network)",
                )
            ]
        return []
    from pathlib import Path

    if not Path(adapter).exists():
        return [
            Problem(
                f"adapter {adapter}: no such file or folder, and not a registered name "
                "(python -m corr.weights list shows them; corr.train writes best.safetensors)"
            )
        ]
    return []


def _spec_problem(spec: str) -> Problem | None:
    """Why an extractor name cannot be built (unknown name, not a factory), or None."""
    if spec.startswith(("timm/", "hf-hub:")):
        return None
    if ":" in spec:
        try:
            load_factory(spec)
        except (ImportError, ValueError) as err:
            return Problem(str(err))
        return None
    if spec not in list_extractors():
        return Problem(
            f"unknown extractor {spec!r}; registered: {', '.join(list_extractors())}; or give a "
            "custom one as 'package.module:factory'"
        )
    return None


def _prompt_problems(
    spec: str, kwargs: Mapping[str, Any], pretrained: bool, needs: list[WeightsNeed]
) -> list[Problem]:
    """A non-empty SD prompt needs the CLIP text encoder: transformers, and the text_encoder/
    and tokenizer/ folders of the SD weights."""
    prompt = kwargs.get("prompt")
    if not prompt:
        return []
    out = []
    if not module_available("transformers"):
        out.append(
            Problem(
                f"prompt {prompt!r} ({spec}) needs the transformers package for SD's CLIP "
                "text encoder (or use an empty prompt)",
                'pip install "semcorr[text]"',
            )
        )
    if not pretrained:
        out.append(
            Problem(
                f"prompt {prompt!r} ({spec}) needs the real SD weights' text encoder; random "
                "weights have none (drop the prompt, or use real weights)"
            )
        )
        return out
    for need in needs:
        try:
            folder = resolve(need.request, path=need.path, kind="diffusers", allow_download=False)
        except WeightsNotFoundError:
            continue  # reported as missing weights (or fetched with them when it loads)
        lacking = [s for s in ("text_encoder", "tokenizer") if not (folder.path / s).is_dir()]
        if lacking:
            get = (
                f"python -m corr.weights download {need.request} (includes the text encoder)"
                if need.request in KNOWN_WEIGHTS
                else f"copy {' and '.join(lacking)} of this model into {folder.path}"
            )
            out.append(
                Problem(
                    f"prompt {prompt!r} ({spec}) needs {' and '.join(s + '/' for s in lacking)} "
                    f"in {folder.path}",
                    get,
                )
            )
    return out


def extras_problems(extras: Sequence[str], why: Mapping[str, str] | None = None) -> list[Problem]:
    """A :class:`Problem` for each optional feature of :data:`EXTRAS` whose package is not
    installed (``why[extra]`` says what asked for it)."""
    out = []
    for extra in dict.fromkeys(extras):
        if extra not in EXTRAS:
            raise ValueError(f"unknown optional feature {extra!r}; known: {', '.join(EXTRAS)}")
        module, pip_extra = EXTRAS[extra]
        if not module_available(module):
            asker = (why or {}).get(extra, f"the {extra!r} feature")
            out.append(
                Problem(
                    f"{asker} needs the {module} package, which is not installed",
                    f'pip install "semcorr[{pip_extra}]"',
                )
            )
    return out


def preflight(
    extractors: Sequence[str | object] = (),
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    protocol: str | Protocol = "corr",
    pretrained: bool = True,
    dtype: str | None = None,
    extras: Sequence[str] = (),
    data: Callable[[], T] | None = None,
    adapter: str | None = None,
) -> T | None:
    """Check everything a run needs and raise one :class:`PreflightError` listing every problem.

    ``extractors``: the specs the run's :class:`~corr.Matcher` will build (objects are skipped),
    with its ``options``, ``protocol``, ``pretrained`` and ``dtype``, as the Matcher takes them;
    ``extras``: optional features it uses (keys of :data:`EXTRAS`; ``"xformers"`` is added when
    an extractor option asks for it); ``data``: a function that loads and checks the run's
    data, whose ``OSError``/``ValueError``/``KeyError`` are problems too; ``adapter``: a
    supervised adapter's registered name or path (found, not loaded). Returns what ``data``
    returned (None without it). Loads no model and opens no weights file.
    """
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    problems: list[Problem] = []
    result = None
    if data is not None:
        try:
            result = data()
        except (OSError, ValueError, KeyError) as err:
            text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            problems.append(Problem(str(text)))
    wanted_extras = list(extras)
    why: dict[str, str] = {}
    needs: list[WeightsNeed] = []
    later: list[Problem] = []
    for spec in extractors:
        if not isinstance(spec, str):
            continue
        bad = _spec_problem(spec)
        if bad is not None:
            problems.append(bad)
            continue
        kwargs = factory_options(spec, proto, options, dtype)
        own = required_weights(spec, kwargs) if pretrained else []
        needs += own
        later += _prompt_problems(spec, kwargs, pretrained, own)
        if kwargs.get("xformers"):
            wanted_extras.append("xformers")
            why["xformers"] = f"xformers attention ({spec})"
    problems += weights_problems(needs)
    if adapter is not None:
        problems += adapter_problems(adapter)
    problems += later
    problems += extras_problems(wanted_extras, why)
    if problems:
        raise PreflightError(problems)
    return result
