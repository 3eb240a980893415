"""Guard rails of the layout (docs/architecture.md): small modules, data sets and metrics free
of model code, and no module using another module's underscore names. Checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "corr"
MAX_LINES = 600
#: code that must never be imported by the data sets and metrics: the networks and everything
#: that runs them (torch itself included: loading annotations must not cost a torch import)
MODEL_MODULES = (
    "torch",
    "timm",
    "diffusers",
    "transformers",
    "corr.extractors",
    "corr.matcher",
    "corr.pair",
    "corr.dense",
    "corr.fusion",
    "corr.matching",
    "corr.extraction",
    "corr.adapters",
    "corr.train",
)
MODEL_FREE = ("corr/datasets", "corr/metrics", "corr/keypoint_tables.py")


def _python_files(*roots: str) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        path = REPO / root
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if "tests/data" not in f.as_posix()]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, source: str | None = None) -> list[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute(node, path)
            names += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"


def _private_names_in(tree: ast.AST) -> frozenset[str]:
    """The underscore names a module defines (functions, classes, module and class attributes,
    ``self._x`` attributes, arguments)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return frozenset(n for n in names if _private(n))


@cache
def _defined_private_names() -> dict[str, frozenset[str]]:
    """Per module of ``corr``: the underscore names it defines."""
    return {
        _module_name(p): _private_names_in(ast.parse(p.read_text())) for p in _python_files("corr")
    }


def _uses_of_others_private_names(path: Path, source: str | None = None) -> list[str]:
    """``from corr.x import _y`` and ``obj._y`` where ``_y`` is an underscore name that other
    modules of corr define and this one does not."""
    defined = _defined_private_names()
    tree = ast.parse(path.read_text() if source is None else source)
    here = _private_names_in(tree)
    elsewhere = set().union(*(v for k, v in defined.items() if k != _module_name(path)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _absolute(node, path)
            if mod.split(".")[0] in ("corr", "benchmarks"):
                found += [
                    f"line {node.lineno}: from {mod} import {a.name}"
                    for a in node.names
                    if _private(a.name) and not (mod == "corr" and a.name == "_compat")
                ]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in elsewhere and node.attr not in here:
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("path", _python_files("corr"), ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(REPO)} has {lines} lines (limit {MAX_LINES}): split it by "
        "responsibility, each file named for what it holds (docs/architecture.md)"
    )


@pytest.mark.parametrize("path", _python_files(*MODEL_FREE), ids=lambda p: str(p.relative_to(REPO)))
def test_data_sets_and_metrics_import_no_model_code(path: Path) -> None:
    bad = sorted(
        {n for n in _imports(path) if any(n == m or n.startswith(m + ".") for m in MODEL_MODULES)}
    )
    assert not bad, f"{path.relative_to(REPO)} imports model code: {bad}"


def test_importing_data_sets_and_metrics_loads_no_model_code() -> None:
    code = (
        "import sys, corr.datasets, corr.metrics, corr.keypoint_tables\n"
        f"print(','.join(m for m in {MODEL_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"model code imported: {out.stdout.strip()}"


@pytest.mark.parametrize(
    "path",
    _python_files("corr", "benchmarks", "demos", "tests"),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_module_uses_another_modules_underscore_names(path: Path) -> None:
    found = _uses_of_others_private_names(path)
    assert not found, (
        f"{path.relative_to(REPO)} uses underscore names of other modules: {found}; make the "
        "name public in the module that defines it (or ask through a public method)"
    )


def test_the_guards_catch_what_they_guard() -> None:
    """Each rule fails on source that breaks it, so the checks cannot pass vacuously."""
    runner = PACKAGE / "eval" / "runner.py"  # a real module path: relative imports resolve
    assert _uses_of_others_private_names(runner, "from ..cache import _crc32\n")
    assert _uses_of_others_private_names(runner, "import corr\ncorr.matcher._check_choice\n")
    assert _uses_of_others_private_names(runner, "def f(m):\n    return m._check_choice\n")
    assert not _uses_of_others_private_names(runner, "class A:\n    _own = 1\nA()._own\n")
    assert not _uses_of_others_private_names(runner, "import torch\ntorch.nn.Module()._modules\n")
    model = [n for n in _imports(runner, "from ..pair import Pair\nimport torch.nn\n")]
    assert {"corr.pair", "torch.nn"} <= set(model)
