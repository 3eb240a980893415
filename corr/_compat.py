"""Compatibility fix for a torchvision build that does not match the installed torch.

Some machines get a CUDA build of torchvision next to a CPU build of torch. Its compiled
operators cannot load, and ``import torchvision`` then fails with
``RuntimeError: operator torchvision::nms does not exist``; the fix is logged (INFO, logger
``corr._compat``) when it is applied. That also breaks ``import timm``
and ``from diffusers import ...``, because both import torchvision when it is installed.

:func:`ensure_torchvision_importable` tries the import; only if it fails with exactly that
error does it declare the two operator schemas torchvision's Python side looks up at import
time and import again (``torchvision.ops`` and ``torchvision.io`` stay unusable: ``corr``
reads images with PIL). With a matching torch/torchvision pair, or no torchvision at all, it
does nothing, and it never defines the schemas twice. Every ``corr`` module that imports
timm or diffusers calls it first.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import torch

logger = logging.getLogger(__name__)
_LIB: torch.library.Library | None = None  # must stay alive for the process lifetime
_DONE = False
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _purge_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work; return True when the schema fix was applied."""
    global _LIB, _DONE
    if _DONE or importlib.util.find_spec("torchvision") is None:
        _DONE = True
        return _LIB is not None
    try:
        importlib.import_module("torchvision")
    except RuntimeError as err:
        if "torchvision::nms does not exist" not in str(err):
            raise
        _purge_torchvision()
        _LIB = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            _LIB.define(schema)
        tv = importlib.import_module("torchvision")
        logger.info(
            "torchvision %s does not match torch %s (its compiled operators cannot load): "
            "declared the torchvision::nms/qnms schemas so that it imports; torchvision.ops and "
            "torchvision.io stay unusable (corr does not use them)",
            getattr(tv, "__version__", "?"),
            torch.__version__,
        )
    _DONE = True
    return _LIB is not None
