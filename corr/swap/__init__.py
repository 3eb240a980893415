"""Instance swapping (the SD+DINO paper's application): :func:`swap` and its parts.

- :mod:`corr.swap.api`: :func:`swap`, the library call (correspondence, initial swap,
  optional refinement);
- :mod:`corr.swap.masks`: checking given instance masks, finding them by co-segmentation;
- :mod:`corr.swap.refine`: the diffusion refinement (DDIM inversion and sampling with
  feature injection), :class:`~corr.swap.refine.Refiner`;
- :mod:`corr.swap.injection`: the forward hooks that record and inject decoder features;
- :mod:`corr.swap.figure`: a figure of one swap;
- :mod:`corr.swap.cli`: ``python -m corr.swap SRC TGT --category cat --out DIR``.

``corr.swap`` is both this package and the function: ``corr.swap(src, tgt, ...)`` calls
:func:`swap` whether or not the package was imported (the package module is callable, so
that ``python -m corr.swap`` and ``corr.swap(...)`` can share the name).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ..outputs import SwapOutput
from .api import PROMPT, swap

__all__ = ["PROMPT", "SwapOutput", "swap"]


class CallableModule(types.ModuleType):
    """The ``corr.swap`` package module, callable as :func:`swap`."""

    def __call__(self, *args: Any, **kwargs: Any) -> SwapOutput:
        return swap(*args, **kwargs)


sys.modules[__name__].__class__ = CallableModule
