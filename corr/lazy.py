"""Public names of a package imported on first use (PEP 562 ``__getattr__``), so that importing
the package stays cheap: ``python -m corr.eval`` / ``corr.train`` reach their own code, which
turns Ctrl-C into "interrupted ... resume", before torch is imported."""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str, exports: dict[str, str], namespace: MutableMapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps each public name to the module
    holding it; a name is imported on first use and kept in ``namespace`` (the package's
    ``globals()``)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
