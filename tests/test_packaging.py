"""The distribution: a free PyPI name, dependencies that are used, typing marker, lint target."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# distribution name -> the module it provides
MODULE_OF = {
    "pillow": "PIL",
    "huggingface_hub": "huggingface_hub",
    "opencv-python-headless": "cv2",
    "scikit-learn": "sklearn",
}


def _setup() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def _imported_modules(folder: Path) -> set[str]:
    """Top-level names of every module imported anywhere under ``folder``."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_distribution_is_not_named_like_the_unrelated_pypi_package():
    name = _setup()["metadata"]["name"]
    assert name == "semcorr"  # free on PyPI on 2026-11-23; `corr` is an unrelated package
    readme = (REPO / "README.md").read_text()
    assert "pip install semcorr" in readme and "import corr" in readme


def test_every_install_requirement_is_imported_by_the_package():
    reqs = _setup()["options"]["install_requires"].split("\n")
    dists = [re.split(r"[<>=!~ \[]", r.strip())[0] for r in reqs if r.strip()]
    used = _imported_modules(REPO / "corr")
    unused = [d for d in dists if MODULE_OF.get(d.lower(), d.lower()) not in used]
    assert not unused, f"declared but never imported by corr/: {unused}"
    for gone in ("opencv-python-headless", "scikit-learn"):
        assert gone not in dists


def test_every_feature_extra_is_imported_by_the_package():
    extras = _setup()["options.extras_require"]
    used = _imported_modules(REPO / "corr")
    for extra in ("warp", "coseg", "app", "xformers", "text"):
        dists = [re.split(r"[<>=!~ \[]", r.strip())[0] for r in extras[extra].split("\n")]
        for d in filter(None, dists):
            assert MODULE_OF.get(d.lower(), d.lower()) in used, f"[{extra}] {d} is never imported"
    test_extra = extras["test"]
    for d in ("opencv-python-headless", "scikit-learn", "gradio", "selenium"):
        assert d in test_extra  # the suite runs every feature


def test_typed_marker_ships_and_ruff_targets_the_oldest_python():
    cfg = _setup()
    assert (REPO / "corr" / "py.typed").is_file()
    assert "py.typed" in cfg["options.package_data"]["corr"]
    oldest = re.search(r">=\s*3\.(\d+)", cfg["options"]["python_requires"]).group(1)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'target-version\s*=\s*"py3(\d+)"', pyproject).group(1) == oldest


def test_torch_requirement_is_the_tested_range():
    """``install_requires`` declares the torch versions that were tested: from the one CI pins
    (.ci/constraints.txt) to an exclusive upper bound above it (the newest release tested by
    hand, see the README's set-up section), never an open-ended ``torch>=2.1``."""
    reqs = _setup()["options"]["install_requires"].split("\n")
    torch_req = next(r.strip() for r in reqs if re.match(r"\s*torch\b", r))
    lower = re.search(r">=\s*(\d+)\.(\d+)", torch_req)
    upper = re.search(r"<\s*(\d+)\.(\d+)", torch_req)
    assert lower and upper, f"{torch_req}: needs both bounds"
    pinned = re.search(r"(?m)^torch==(\d+)\.(\d+)", (REPO / ".ci" / "constraints.txt").read_text())
    as_tuple = lambda m: tuple(int(x) for x in m.groups())  # noqa: E731
    assert as_tuple(lower) == as_tuple(pinned), "the lower bound is the version CI tests"
    assert as_tuple(upper) > as_tuple(pinned)
