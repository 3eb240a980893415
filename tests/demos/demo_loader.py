"""Load a demo script by path (demos/ is not a package)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_demo(name: str):
    """Import ``demos/{name}.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"_demo_{name}", REPO / "demos" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
