"""The interactive demo: ``python -m corr.app`` (needs the ``[app]`` extra, gradio).

:class:`PairSession` (features and descriptors of a pair computed once, then a click is a
lookup) and :class:`DemoApp` (the page's logic) work without gradio; :mod:`corr.app.ui` builds
the page.
"""

from .demo import BACKBONES, DemoApp, PageState
from .session import ClickResult, FlipDecision, PairSession

__all__ = ["BACKBONES", "ClickResult", "DemoApp", "FlipDecision", "PageState", "PairSession"]
