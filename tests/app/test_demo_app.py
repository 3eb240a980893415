"""corr.app.demo: the page's logic without a browser (backbones, state, pictures, text)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corr import Matcher, WeightsNotFoundError
from corr.app import DemoApp, PageState
from corr.app.demo import STANDIN, backbone_problem, bundled_examples
from corr.app.render import (
    PALETTE,
    display_scale,
    draw_points,
    from_display,
    heatmap_overlay,
    point_color,
    to_display,
)

ASSETS = Path(__file__).resolve().parents[2] / "corr" / "samples"


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A machine without SD / DINOv2 weights (empty weights folder and HF cache, offline)."""
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def app(no_weights, real_mobilenet):
    return DemoApp(device="cpu", max_display=400)


def test_without_weights_the_page_starts_with_the_stand_in_and_says_so(app):
    assert app.backbone == STANDIN and app.problems[STANDIN] is None
    notice = app.notice()
    assert "weights are missing" in notice and "MobileNetV2 stand-in" in notice
    assert "python -m corr.weights download sd15 dinov2_vitb14" in notice
    with pytest.raises(WeightsNotFoundError, match="corr.weights download sd15 dinov2_vitb14"):
        app.matcher("sd-dino")  # never random weights
    with pytest.raises(WeightsNotFoundError, match="dinov2_vitb14"):
        app.matcher("dino")
    assert "dinov2" not in (backbone_problem("sd") or "")


def test_bundled_pairs_are_the_demo_photos():
    pairs = bundled_examples()
    assert [Path(p).name for p in pairs[0]] == ["tiger_a.jpg", "tiger_b.jpg"]
    assert all(Path(p).is_file() for pair in pairs for p in pair)


def test_load_click_flip_clear(app, real_mobilenet):
    src, tgt = ASSETS / "tiger_a.jpg", ASSETS / "tiger_b.jpg"
    state, status = app.load(str(src), str(tgt), STANDIN, 0.5)
    assert "Features ready" in status and "MobileNetV2" in status
    # tiger_a is 925 x 1080, shown at 400 px high: shown pixel (100, 200) is original
    # ((100.5) / s - 0.5, (200.5) / s - 0.5) with s = 400 / 1080
    s = display_scale(925, 1080, 400)
    assert s == pytest.approx(400 / 1080)
    state, status = app.click(state, 100, 200)
    want_src = ((100 + 0.5) / s - 0.5, (200 + 0.5) / s - 0.5)
    assert state.clicks[0].source == pytest.approx(want_src)
    ref = Matcher([real_mobilenet], device="cpu").match(str(src), str(tgt), [want_src])
    assert state.clicks[0].target == pytest.approx(tuple(ref.keypoints1[0]), abs=1e-3)
    assert status.startswith("Point 1: source (") and "ms." in status
    state, _ = app.click(state, 250, 120)
    rows = json.loads(app.matches_json(state))
    assert [r["point"] for r in rows] == [1, 2]
    assert rows[0]["target_xy"] == pytest.approx(list(ref.keypoints1[0]), abs=1e-3)
    assert rows[0]["similarity"] == pytest.approx(ref.confidence[0], abs=1e-4)

    shown_src, shown_tgt = app.pictures(state)
    assert max(shown_src.shape[:2]) == 400 and max(shown_tgt.shape[:2]) == 400
    # each point keeps its colour: point 1's dot, drawn at its shown position
    x, y = (round(v) for v in to_display(state.clicks[0].source, s))
    assert tuple(shown_src[y, x]) == pytest.approx(PALETTE[0], abs=3)
    x, y = (round(v) for v in to_display(state.clicks[1].source, s))
    assert tuple(shown_src[y, x]) == pytest.approx(PALETTE[1], abs=3)

    state, status = app.flip(state)
    assert status.startswith("Flip alignment: the ")
    flip_ref = Matcher([real_mobilenet], device="cpu").match(
        str(src), str(tgt), [c.source for c in state.clicks], flip=True, flip_pairs=[]
    )
    assert state.mirrored == flip_ref.flip["flipped"]
    np.testing.assert_allclose(
        [c.target for c in state.clicks], flip_ref.keypoints1, rtol=0, atol=1e-3
    )
    state, status = app.clear(state)
    assert state.clicks == [] and json.loads(app.matches_json(state)) == []


def test_no_images_yet(app):
    state, status = app.load(None, None, STANDIN, 0.5)
    assert "Upload a source and a target image" in status
    with pytest.raises(ValueError, match="no image pair yet"):
        app.click(state, 1, 1)
    assert app.pictures(PageState()) == (None, None)


def test_display_mapping_round_trips_and_colours_are_stable():
    for s in (1.0, 0.37, 0.5):
        xy = (123.25, 7.0)
        assert from_display(to_display(xy, s), s) == pytest.approx(xy)
    assert to_display((0, 0), 1.0) == (0, 0)
    # pixel i of a half-size view covers original pixels 2i and 2i + 1: its centre is 2i + 0.5
    assert from_display((10, 10), 0.5) == (20.5, 20.5)
    assert [point_color(i) for i in range(3)] == list(PALETTE[:3])
    assert point_color(len(PALETTE)) == PALETTE[0]
    assert len(set(PALETTE)) == len(PALETTE)


def test_heat_map_and_markers():
    image = np.full((20, 30, 3), 100, np.uint8)
    heat = np.tile(np.linspace(-1, 1, 30), (20, 1))
    heat[:, :5] = np.nan
    out = heatmap_overlay(image, heat)
    assert (out[:, :5] == 100).all()  # NaN: the photo shows through
    # turbo: blue-ish at the minimum, red-ish at the maximum
    assert out[10, 5, 2] > out[10, 5, 0] and out[10, 29, 0] > out[10, 29, 2]
    drawn = draw_points(image, [(10, 10), (np.nan, 3)], [(255, 0, 0), (0, 255, 0)], radius=3)
    assert tuple(drawn[10, 10]) == (255, 0, 0)
    green = (drawn == np.array([0, 255, 0], np.uint8)).all(axis=2)
    assert not green.any()  # the NaN point is not drawn
    assert (drawn[10, 10 + 3] == 255).all()  # the white rim
    with pytest.raises(ValueError, match="style"):
        draw_points(image, [(1, 1)], [(0, 0, 0)], style="star")


def test_command_line_help_names_every_option(capsys):
    from corr.app.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--backbone", "--device", "--host", "--port", "--max-display"):
        assert opt in out
    assert "mobilenet" in out and "sd-dino" in out


def test_a_trained_adapter_is_a_backbone_of_its_own(no_weights, real_mobilenet, standin_adapter):
    src, tgt = ASSETS / "tiger_a.jpg", ASSETS / "tiger_b.jpg"
    path = standin_adapter
    app = DemoApp(device="cpu", max_display=400, adapter=str(path))
    assert app.backbone == "adapter" and str(path) in app.backbones["adapter"][0]
    state, status = app.load(str(src), str(tgt), "adapter", 0.5)
    assert "trained adapter" in status
    state, _ = app.click(state, 100, 200)
    ref = Matcher(device="cpu", adapter=str(path))  # the extractors it was trained on
    assert ref.specs == [real_mobilenet] and ref.method == "nn"
    want = ref.match(str(src), str(tgt), [state.clicks[0].source])
    assert state.clicks[0].target == pytest.approx(tuple(want.keypoints1[0]), abs=1e-3)
