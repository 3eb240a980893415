"""Which weights a set of extractors needs and which are missing, named at once.

:class:`WeightsNeed` is one weights request of an extractor (what
:func:`corr.extractors.registry.required_weights` lists); :func:`weights_problems` looks each
up with :func:`~corr.weights.resolve` without downloading and returns a :class:`Problem` per
missing one, with the command that gets them; :func:`missing_weights_error` makes them one
:class:`~corr.weights.WeightsNotFoundError`. :class:`corr.Matcher` raises it before building any
extractor, and :func:`corr.preflight.preflight` lists the problems with the data's and the
packages'. Nothing is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .places import hub_unreachable_reason, offline_reason, weights_dir
from .registry import KNOWN_WEIGHTS
from .resolve import WeightsNotFoundError, resolve

__all__ = [
    "WeightsNeed",
    "Problem",
    "format_problems",
    "weights_problems",
    "missing_weights_error",
]


@dataclass(frozen=True)
class WeightsNeed:
    """Weights an extractor resolves when it is built with ``pretrained=True``: the request
    (a known name such as ``"sd15"``, a hub id or a folder), the explicit ``path`` option, and
    the kind (``"diffusers"``, ``"dinov2"``, ``"dinov3"`` or ``"unet-file"``); see
    :func:`corr.weights.resolve`."""

    request: str
    path: str | None
    kind: str


@dataclass(frozen=True)
class Problem:
    """One thing a run lacks: what (may span lines) and the command that fixes it (or None
    when ``what`` already says it)."""

    what: str
    fix: str | None = None


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
