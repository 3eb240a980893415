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

:class:`corr.Matcher` runs the weights part (:func:`missing_weights_error`) before it builds any
extractor, so a missing model is named together with every other missing one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .extractors.registry import (
    WeightsNeed,
    factory_options,
    list_extractors,
    load_factory,
    required_weights,
)
from .protocols import Protocol, get_protocol
from .weights import (
    KNOWN_WEIGHTS,
    WeightsNotFoundError,
    hub_unreachable_reason,
    offline_reason,
    resolve,
    weights_dir,
)

T = TypeVar("T")

#: optional features -> (the module they import, the extra of ``pip install "semcorr[...]"``)
EXTRAS: dict[str, tuple[str, str]] = {
    "text": ("transformers", "text"),
    "xformers": ("xformers", "xformers"),
    "warp": ("cv2", "warp"),
    "coseg": ("sklearn", "coseg"),
    "app": ("gradio", "app"),
}


@dataclass(frozen=True)
class Problem:
    """One thing a run lacks: what (may span lines) and the command that fixes it (or None
    when ``what`` already says it)."""

    what: str
    fix: str | None = None


class PreflightError(Exception):
    """A run cannot start: :attr:`problems` lists everything missing, each with its fix.

    The message is the one problem as it was raised when there is one, else a list of them and
    of the commands that fix them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(format_problems(self.problems, "this run cannot start"))


def format_problems(problems: Sequence[Problem], head: str) -> str:
    """``problems`` as one message: a single one as it is (and its fix); several under
    ``head`` (``"head (nothing was loaded); N problems:"``), then their fixes, each once."""
    if len(problems) == 1:
        p = problems[0]
        return p.what + (f"\nto fix it: {p.fix}" if p.fix else "")
    lines = [f"{head} ({len(problems)} problems; nothing was loaded):"]
    lines += ["  - " + p.what.replace("\n", "\n    ") for p in problems]
    fixes = list(dict.fromkeys(p.fix for p in problems if p.fix))
    if fixes:
        lines.append("to fix them:")
        lines += [f"  {f}" for f in fixes]
    return "\n".join(lines)


def module_available(name: str) -> bool:
    """Whether ``import name`` would find the module (nothing is imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _download_blocker() -> str | None:
    """Why a missing known weight cannot be downloaded when its model loads (None: it can)."""
    return offline_reason() or hub_unreachable_reason()


def _weights_line(need: WeightsNeed, err: WeightsNotFoundError, blocker: str | None) -> str:
    known = KNOWN_WEIGHTS.get(need.request)
    name = need.request + (f" ({known.description})" if known is not None else "")
    looked = [
        entry
        for entry in err.looked
        if not entry.startswith(("explicit path: none given", "Hugging Face Hub "))
    ]
    if not err.explicit_path and blocker is not None:
        looked.append(f"download: {blocker}")
    return f"weights {name} were not found; looked in:" + "".join(f"\n  {e}" for e in looked)


def _weights_fix(needs: Sequence[WeightsNeed]) -> str:
    names = [n.request for n in needs if n.request in KNOWN_WEIGHTS and n.path is None]
    others = [n for n in needs if n.request not in KNOWN_WEIGHTS or n.path is not None]
    parts = []
    if names:
        parts.append(
            f"python -m corr.weights download {' '.join(dict.fromkeys(names))} (needs network; "
            f"on a machine without it, run it elsewhere and copy the files to {weights_dir()}/, "
            "or set CORR_WEIGHTS_DIR to a folder that holds them: `python -m corr.weights "
            "list` shows the names looked for)"
        )
    for n in others:
        what = "a diffusers folder with unet/ and vae/" if n.kind == "diffusers" else "a file"
        parts.append(f"give {what} for {n.path or n.request} (a local path), or a known name")
    return "\n  ".join(parts)


def weights_problems(needs: Sequence[WeightsNeed]) -> list[Problem]:
    """A :class:`Problem` for every weights request of ``needs`` that :func:`resolve` cannot
    satisfy without downloading, when a download cannot be tried either (offline, or the hub
    does not answer); an unusable explicit path always is one. Nothing is loaded."""
    missing: list[tuple[WeightsNeed, WeightsNotFoundError]] = []
    for need in dict.fromkeys(needs):
        try:
            resolve(need.request, path=need.path, kind=need.kind, allow_download=False)  # type: ignore[arg-type]
        except WeightsNotFoundError as err:
            missing.append((need, err))
    if not missing:
        return []
    blocker = None
    if any(not err.explicit_path for _, err in missing):
        blocker = _download_blocker()
        if blocker is None:  # the hub answers: what is not local is fetched when it loads
            missing = [(n, e) for n, e in missing if e.explicit_path]
    fix = _weights_fix([n for n, _ in missing])
    return [Problem(_weights_line(n, e, blocker), fix) for n, e in missing]


def missing_weights_error(needs: Sequence[WeightsNeed]) -> WeightsNotFoundError | None:
    """One :class:`~corr.weights.WeightsNotFoundError` naming every missing weight of
    ``needs`` and the command that gets them, or None when nothing is missing."""
    problems = weights_problems(needs)
    if not problems:
        return None
    text = format_problems(problems, "weights are missing")
    return WeightsNotFoundError(
        text + "\nRandom weights are never substituted (pretrained=False builds random ones, "
        "for tests and speed checks only).",
        request=", ".join(dict.fromkeys(n.request for n in needs)),
    )


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
