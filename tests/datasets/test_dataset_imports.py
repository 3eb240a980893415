"""The loaders, tables and metrics import no model code (checked on their source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = [
    "corr/datasets/__init__.py",
    "corr/datasets/records.py",
    "corr/datasets/paths.py",
    "corr/datasets/spair.py",
    "corr/datasets/pfpascal.py",
    "corr/datasets/ap10k.py",
    "corr/datasets/ap10k_raw.py",
    "corr/datasets/ap10k_pairs.py",
    "corr/datasets/ap10k_build.py",
    "corr/keypoint_tables.py",
    "corr/metrics/__init__.py",
    "corr/metrics/pck.py",
]
FORBIDDEN = ("torch", "timm", "diffusers", "transformers", "corr.extractors", "corr.matcher")


@pytest.mark.parametrize("module", MODULES)
def test_no_model_imports(module: str) -> None:
    tree = ast.parse((REPO / module).read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level and node.module:
            assert not node.module.startswith("extractors"), module
    bad = [n for n in names if n.split(".")[0] in FORBIDDEN or n.startswith(FORBIDDEN)]
    assert not bad, f"{module} imports {bad}"


def test_importing_datasets_and_metrics_loads_no_model_code():
    import subprocess
    import sys

    code = (
        "import sys, corr.datasets, corr.metrics, corr.keypoint_tables\n"
        "bad = [m for m in ('torch', 'timm', 'diffusers', 'corr.extractors') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"model code imported: {out.stdout.strip()}"
