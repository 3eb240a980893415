"""The interactive demo: ``python -m corr.app`` (needs the ``[app]`` extra, gradio).

:class:`DemoApp` (the page's logic: one :class:`~corr.pair.Pair` per loaded pair, so a click is
a lookup) works without gradio; :mod:`corr.app.ui` builds the page.
"""

from .demo import BACKBONES, ClickResult, DemoApp, PageState, answer_click

__all__ = ["BACKBONES", "ClickResult", "DemoApp", "PageState", "answer_click"]
