"""corr.app.swap_tab: the page's Swap tab without a browser (the stand-in's initial swap, the
refinement switched off with a note when the SD weights are missing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import corr
from corr import WeightsNotFoundError
from corr.app import DemoApp
from corr.app.demo import STANDIN
from corr.app.render import display_scale, resized
from corr.app.swap_tab import SwapTab

ASSETS = Path(__file__).resolve().parents[2] / "corr" / "samples"


@pytest.fixture
def app(tmp_path, monkeypatch, real_mobilenet):
    """The page on a machine without SD / DINOv2 weights (empty folders, offline)."""
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return DemoApp(device="cpu", max_display=300)


def test_without_sd_weights_the_tab_swaps_with_the_stand_in_and_says_why(app, real_mobilenet):
    pytest.importorskip("sklearn")
    tab = SwapTab(app)
    assert "python -m corr.weights download sd15" in tab.problem
    assert "**Refinement off:**" in tab.note() and "initial swap only" in tab.note()
    src, tgt = ASSETS / "jaguar.jpg", ASSETS / "tiger_b.jpg"
    state, _ = app.load(str(src), str(tgt), STANDIN, 0.5)
    with pytest.raises(WeightsNotFoundError, match="refinement off: the SD 1.5 weights"):
        tab.run(state, STANDIN, "tiger", refine=True)  # never random weights
    initial, refined, status = tab.run(state, STANDIN, "tiger", refine=False)
    assert refined is None and status.startswith("initial swap with MobileNetV2")
    assert "of the target instance's pixels replaced (masks from cosegmentation)" in status
    # the library's swap of the same pair and backbone, shown at the page's size
    want = corr.swap(state.src, state.tgt, refine=False, matcher=app.matcher(STANDIN)).initial
    h, w = want.shape[:2]
    np.testing.assert_array_equal(initial, resized(want, display_scale(w, h, 300)))
    assert max(initial.shape[:2]) == 300


def test_the_tab_needs_a_loaded_pair(app):
    from corr.app import PageState

    with pytest.raises(ValueError, match="no image pair yet"):
        SwapTab(app).run(PageState(), STANDIN, "cat", refine=False)


def test_the_page_has_the_swap_tab(app):
    pytest.importorskip("gradio")
    from corr.app.ui import build_blocks

    blocks = build_blocks(app)
    ids = {getattr(b, "elem_id", None) for b in blocks.blocks.values()}
    want = {"tab-swap", "swap-note", "swap-refine", "swap-run", "swap-initial"}
    assert want <= ids and {"source-view", "status", "matches"} <= ids
    refine = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "swap-refine")
    assert refine.value is False and refine.interactive is False  # off without SD weights
