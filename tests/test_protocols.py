"""Protocols: one name sets every knob of a reference; explicit knobs override and are recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from corr.matcher import Matcher
from corr.protocols import MATCHER_KNOBS, PROTOCOLS, extractor_knobs, get_protocol

TINY = ["sd-tiny", "dinov2-tiny"]


def test_every_protocol_sets_every_matcher_knob():
    for p in PROTOCOLS.values():
        assert set(p.matcher) == set(MATCHER_KNOBS), p.name
        assert p.eval["tables"] in ("ids", "geoaware") and p.eval["pck"] in ("<", "<=")
        # both SD+DINO references resize with LANCZOS; DIFT with PIL's default resize (bicubic)
        assert p.resample == ("bicubic" if p.name == "dift" else "lanczos")


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_matcher_takes_the_protocol_knobs(name):
    m = Matcher(TINY, protocol=name, pretrained=False)
    p = get_protocol(name)
    cfg = m.config()
    assert cfg["protocol"] == p.as_dict() and cfg["overrides"] == {}
    for knob in MATCHER_KNOBS:
        if knob != "fuse":
            assert cfg[knob] == p.matcher[knob], knob
    assert all(e.resample == p.resample for e in m.extractors)


def test_reference_protocols_hold_the_reference_values():
    geo, sdd, ours = (get_protocol(n) for n in ("geoaware", "sd-dino", "corr"))
    assert geo.matcher["fusion"] == "concat" and geo.matcher["pca_dim"] is None
    assert geo.matcher["window_mode"] == "zero" and geo.matcher["window"] == 5
    assert geo.sd["timestep"] == 50 and geo.sd["tiled"] and geo.sd["freeu"] == "geoaware"
    assert sdd.matcher["method"] == "nn" and sdd.matcher["centre_shift"] == -0.5
    assert sdd.matcher["pca_method"] == "lowrank" and sdd.sd["timestep"] == 100
    assert not geo.matcher["exclude_padding"] and not sdd.matcher["exclude_padding"]
    assert ours.matcher["exclude_padding"] and ours.matcher["window_mode"] == "exclude"
    # the SD / DINOv2 factories get the protocol's options; test models and custom specs don't
    assert extractor_knobs(geo, "sd15")["timestep"] == 50
    assert extractor_knobs(geo, "dinov2_vitb14") == {"input_size": 840}
    assert extractor_knobs(geo, "sd-tiny") == {} and extractor_knobs(geo, "my.mod:f") == {}


def test_explicit_knobs_override_one_by_one_and_are_recorded():
    m = Matcher(TINY, protocol="geoaware", window=7, pca_dim=None, pretrained=False)
    assert m.window == 7 and m.window_mode == "zero"
    assert m.config()["overrides"] == {"window": 7}  # pca_dim=None is geoaware's own value
    m2 = Matcher(TINY, protocol="corr", pca_dim=None, pretrained=False)
    assert m2.pca_dim is None and m2.config()["overrides"] == {"pca_dim": None}


def test_unknown_protocol_and_bad_knob_are_named():
    with pytest.raises(ValueError, match="unknown protocol 'dino-v3'.*corr"):
        Matcher(TINY, protocol="dino-v3", pretrained=False)
    with pytest.raises(ValueError, match="window_mode must be one of"):
        Matcher(TINY, window_mode="clip", pretrained=False)


@pytest.mark.usefixtures("real_mobilenet")
def test_sd_dino_predictions_sit_on_its_cell_centres(minireal, tmp_path):
    from corr.eval.cli import main
    from corr.geometry import Letterbox

    out = tmp_path / "sdd"
    root = minireal / "SPair-71k"
    args = ["spair", "--root", str(root), "--extractor", "corr.contrib.mobilenet:mobilenetv2"]
    assert (
        main([*args, "--protocol", "sd-dino", "--limit", "4", "--out", str(out), "--no-progress"])
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["matcher"]["protocol"]["name"] == "sd-dino"
    assert res["config"]["run"]["tables_rule"] == "geoaware"
    from corr.eval.plan import EvalOptions, load_records

    records = load_records(EvalOptions("spair", str(root), limit=4))
    frame, cell = 448, 8  # mobilenet: 448 px letterbox, stride 8
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    for rec, line in zip(records, lines, strict=True):
        pred = np.array([p for p in line["pred"] if p is not None])
        lb = Letterbox(*rec.tgt_size, frame).to_letterbox(pred)
        # nearest neighbour, centre 8p + 4 - 0.5, no clipping: x + 0.5 is a multiple of 8 plus 4
        assert np.allclose(np.mod(lb + 0.5, cell), cell / 2, atol=2e-2), rec.pair_id


@pytest.mark.usefixtures("real_mobilenet")
def test_geoaware_runs_end_to_end_with_flip(minireal, tmp_path):
    from corr.eval.cli import main

    out = tmp_path / "geo"
    root = minireal / "SPair-71k"
    args = ["spair", "--root", str(root), "--extractor", "corr.contrib.mobilenet:mobilenetv2"]
    args += ["--protocol", "geoaware", "--flip", "--flip-table", str(minireal / "flip.json")]
    assert main([*args, "--limit", "6", "--window", "3", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["config"]["matcher"]
    assert m["protocol"]["name"] == "geoaware" and m["overrides"] == {"window": 3}
    assert (m["fusion"], m["window_mode"], m["flip_distance"], m["mirror"]) == (
        "concat",
        "zero",
        "reference",
        "letterbox",
    )
    # a flip table given by file is used as written, and the results say so
    assert any("used as written" in n for n in res["notes"])
    assert res["flip"]["overall"]["n_pairs"] == 6


@pytest.mark.usefixtures("real_mobilenet")
def test_dift_runs_end_to_end_on_pixels(minireal, tmp_path):
    from corr.eval.cli import main
    from corr.eval.plan import EvalOptions, load_records

    out = tmp_path / "dift"
    root = minireal / "SPair-71k"
    args = ["spair", "--root", str(root), "--extractor", "corr.contrib.mobilenet:mobilenetv2"]
    assert (
        main([*args, "--protocol", "dift", "--limit", "4", "--out", str(out), "--no-progress"]) == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert (res["config"]["matcher"]["method"], res["config"]["matcher"]["resize"]) == (
        "pixel",
        "stretch",
    )
    assert res["config"]["run"]["pck"] == "<=" and "<= alpha" in res["metric"]["pck"]
    # pixel matching returns integer target pixels inside the image
    records = load_records(EvalOptions("spair", str(root), limit=4))
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    for rec, line in zip(records, lines, strict=True):
        pred = np.array([p for p in line["pred"] if p is not None])
        assert np.array_equal(pred, np.round(pred))
        assert (
            (pred >= 0).all()
            and (pred[:, 0] < rec.tgt_size[0]).all()
            and (pred[:, 1] < rec.tgt_size[1]).all()
        )
