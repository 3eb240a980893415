"""demos/keypoint_transfer.py: runs end to end on tiny random models, validates its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from demo_loader import load_demo
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "corr" / "samples"  # the bundled samples the demo uses by default
TINY = ["--extractor", "tiny", "--no-pretrained", "--device", "cpu"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


kt = load_demo("keypoint_transfer")


def _read(out: Path) -> dict:
    assert out.is_file() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == PNG_MAGIC
    return json.loads(out.with_suffix(".json").read_text())


def _inside(points: np.ndarray, width: int, height: int) -> bool:
    return bool(
        np.isfinite(points).all()
        and (points[:, 0] >= 0).all()
        and (points[:, 0] <= width - 1).all()
        and (points[:, 1] >= 0).all()
        and (points[:, 1] <= height - 1).all()
    )


def test_no_arguments_uses_the_bundled_assets(tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert kt.main([*TINY, "--out", str(out)]) == 0
    data = _read(out)
    assert Path(data["src"]["path"]).name == "tiger_a.jpg"
    assert Path(data["tgt"]["path"]).name == "tiger_b.jpg"
    assert (data["tgt"]["width"], data["tgt"]["height"]) == (1239, 731)
    assert "ORIGINAL image pixels" in data["note"]
    bundled = json.loads((ASSETS / "points.json").read_text())
    assert [p["name"] for p in data["points"]] == bundled["names"]
    np.testing.assert_allclose([p["src"] for p in data["points"]], bundled["points"], atol=0.01)
    tgt = np.array([p["tgt"] for p in data["points"]])
    assert _inside(tgt, data["tgt"]["width"], data["tgt"]["height"])
    assert all(np.isfinite(p["confidence"]) for p in data["points"])
    # errors and the pair's PCK against the bundled labels, recomputed here
    ann = json.loads((ASSETS / "annotations.json").read_text())["images"]["tiger_b.jpg"]
    # ATRW has no object box (the annotation's box is the whole image): the tight box of the
    # target's labelled keypoints, not the image, sets the threshold
    assert ann["bndbox"] == [0, 0, 1238, 730]
    xy = np.array([v for v in ann["keypoints"].values() if v is not None])
    thr = 0.1 * max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]))
    assert thr < 0.1 * 1238 - 10
    hits = 0
    for p in data["points"]:
        gt = ann["keypoints"][p["name"]]
        err = ((p["tgt"][0] - gt[0]) ** 2 + (p["tgt"][1] - gt[1]) ** 2) ** 0.5
        assert p["error_px"] == pytest.approx(err, abs=0.02)
        hits += err < thr
    pck = data["pck@0.10"]
    assert (pck["correct"], pck["labelled"]) == (hits, 15)
    assert pck["threshold_px"] == pytest.approx(thr) and "labelled keypoints" in pck["box"]
    assert "RANDOM weights" in data["extractor"]["features"]
    printed = capsys.readouterr().out
    assert f"PCK@0.10 of this pair (per keypoint): {hits} of 15" in printed
    assert data["extractor"]["pretrained"] is False
    assert [e["class"] for e in data["extractor"]["config"]["extractors"]] == [
        "SDExtractor",
        "DinoExtractor",
    ]
    assert str(out) in printed


def test_explicit_points(tmp_path):
    out = tmp_path / "explicit.png"
    src, tgt = ASSETS / "gazelle.jpg", ASSETS / "jaguar.jpg"
    argv = [str(src), str(tgt), "--points", "100,50; 300.5,276.8;639,426", "--out", str(out), *TINY]
    assert kt.main([*argv, "--matcher", "nn"]) == 0
    data = _read(out)
    np.testing.assert_allclose(
        [p["src"] for p in data["points"]], [[100, 50], [300.5, 276.8], [639, 426]]
    )
    assert _inside(np.array([p["tgt"] for p in data["points"]]), 640, 462)
    assert data["extractor"]["matcher"] == "nn"
    assert all(p["name"] is None and "error_px" not in p for p in data["points"])


def test_automatic_points_lie_in_the_source(tmp_path):
    out = tmp_path / "auto.png"
    src, tgt = ASSETS / "gazelle.jpg", ASSETS / "jaguar.jpg"
    assert kt.main([str(src), str(tgt), "--num-points", "6", "--out", str(out), *TINY]) == 0
    data = _read(out)
    assert data["points_from"].startswith("automatic")
    assert 1 <= len(data["points"]) <= 6
    assert _inside(np.array([p["src"] for p in data["points"]]), 640, 427)
    assert _inside(np.array([p["tgt"] for p in data["points"]]), 640, 462)
    assert all(isinstance(p["mutual_nn"], bool) for p in data["points"])


@pytest.mark.parametrize("points", ["1,2;abc", "1,2,3", ";", "nan,4"])
def test_bad_points_string_is_a_usage_error(tmp_path, capsys, points):
    out = tmp_path / "fig.png"
    rc = kt.main(
        [
            str(ASSETS / "gazelle.jpg"),
            str(ASSETS / "jaguar.jpg"),
            "--points",
            points,
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert rc == 2
    assert "--points" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_point_outside_the_source_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "fig.png"
    rc = kt.main(["--points", "925,10", "--out", str(out), *TINY])  # tiger_a: 925 px wide
    assert rc == 2
    err = capsys.readouterr().err
    assert "--points" in err and "outside" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_image_is_a_usage_error(tmp_path, capsys):
    missing = tmp_path / "no_such_photo.jpg"
    out = tmp_path / "fig.png"
    rc = kt.main(
        [str(missing), str(ASSETS / "jaguar.jpg"), "--points", "1,1", "--out", str(out), *TINY]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "SRC" in err and "no_such_photo.jpg" in err
    assert list(tmp_path.iterdir()) == []
    bad_file = tmp_path / "points.json"
    rc = kt.main(["--points-file", str(bad_file), "--out", str(out), *TINY])
    assert rc == 2
    assert "--points-file" in capsys.readouterr().err
    assert not out.exists()


def test_default_extractor_without_weights_says_what_to_do(tmp_path, capsys, monkeypatch):
    from corr.weights import WeightsNotFoundError, resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CORR_OFFLINE", "1")
    try:
        resolve("sd15", allow_download=False)
    except WeightsNotFoundError:
        pass
    else:
        pytest.skip("real SD 1.5 weights are present: the default would run the full model")
    out = tmp_path / "fig.png"
    assert kt.main(["--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "were not found" in err and kt.MOBILENET in err
    assert not out.exists()


def test_warp_option_saves_the_warped_source_at_the_target_size(tmp_path, capsys):
    out, warp = tmp_path / "fig.png", tmp_path / "warped.png"
    src, tgt = ASSETS / "gazelle.jpg", ASSETS / "jaguar.jpg"
    argv = [str(src), str(tgt), "--points", "100,50", "--out", str(out), "--warp", str(warp)]
    assert kt.main([*argv, *TINY, "--matcher", "nn"]) == 0
    assert warp.read_bytes()[:8] == PNG_MAGIC
    with Image.open(warp) as im:
        assert im.size == (640, 462) and im.mode == "RGB"  # the target's size
    data = _read(out)
    assert data["warp"]["path"] == str(warp) and 0 <= data["warp"]["valid_fraction"] <= 1
    assert f"warp:   {warp}" in capsys.readouterr().out
    rc = kt.main([*argv[:-1], str(tmp_path / "warped.gif"), *TINY])
    assert rc == 2 and "--warp" in capsys.readouterr().err


def test_adapter_runs_through_its_extractors_and_is_recorded(standin_adapter, tmp_path):
    """``--adapter PATH``: the extractors the adapter was trained on (no --extractor needed),
    its evaluation, the points of ``Matcher(adapter=...)``, and the adapter in the JSON and
    the caption."""
    from corr import Matcher

    src, tgt = ASSETS / "gazelle.jpg", ASSETS / "jaguar.jpg"
    path = standin_adapter
    out = tmp_path / "adapter.png"
    points = [[100.0, 50.0], [300.5, 276.8]]
    argv = [str(src), str(tgt), "--points", "100,50; 300.5,276.8", "--out", str(out)]
    assert kt.main([*argv, "--adapter", str(path), "--device", "cpu"]) == 0
    data = _read(out)
    assert data["extractor"]["adapter"]["sha256"]
    assert f"through the trained adapter {path}" in data["extractor"]["features"]
    assert data["extractor"]["matcher"] == "nn"  # the adapter's evaluation
    want = Matcher(adapter=path, device="cpu").match(str(src), str(tgt), points).keypoints1
    np.testing.assert_allclose([p["tgt"] for p in data["points"]], want, atol=1e-2)
