"""Scoring another tool's predictions: JSONL and GeoAware-SC's result.pkl."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from corr.datasets import load_spair
from corr.eval.cli import main
from corr.eval.external import PredictionsError, score_predictions


@pytest.fixture()
def spair(minireal):
    root = minireal / "SPair-71k"
    return root, load_spair(root)


def _write_jsonl(path, preds: dict) -> None:
    path.write_text("".join(json.dumps({"pair_id": k, "pred": v}) + "\n" for k, v in preds.items()))


def _gt(rec) -> list:
    return [None if np.isnan(p).any() else [float(p[0]), float(p[1])] for p in rec.tgt_kps]


def test_exact_pck_of_known_predictions(spair, tmp_path):
    root, records = spair
    # every pair: the labels themselves, except keypoint row 0 (where visible in both) moved
    # by 0.5 x T_ref, which is wrong at every threshold
    preds, wrong, total = {}, 0, 0
    for r in records:
        pred = _gt(r)
        both = r.src_vis & r.tgt_vis
        total += int(both.sum())
        if both[0]:
            pred[0] = [pred[0][0] + 0.5 * r.pck_size, pred[0][1]]
            wrong += 1
        preds[r.pair_id] = pred
    path = tmp_path / "preds.jsonl"
    _write_jsonl(path, preds)
    res = score_predictions(path, "spair", root, out=tmp_path / "scored", log=lambda s: None)
    overall = res["results"]["overall"]
    for alpha in ("0.10", "0.05", "0.01"):
        assert overall["pck_per_keypoint"][alpha] == pytest.approx((total - wrong) / total)
    assert res["predictions"]["pairs_scored"] == len(records)
    assert res["predictions"]["pairs_without_prediction"] == 0
    assert (tmp_path / "scored" / "results.json").is_file()
    assert (tmp_path / "scored" / "results.csv").is_file()


def test_a_corr_runs_predictions_score_the_same_as_the_run(minireal, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", "dinov2-tiny"]
    argv += ["--no-pretrained", "--limit", "6", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    expected = json.loads((run / "results.json").read_text())["results"]
    lines = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    theirs = tmp_path / "theirs.jsonl"
    _write_jsonl(theirs, {x["pair_id"]: x["pred"] for x in lines})
    capsys.readouterr()
    argv = ["score", "--predictions", str(theirs), "--dataset", "spair"]
    argv += ["--root", str(minireal / "SPair-71k"), "--out", str(tmp_path / "scored")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    n_pairs = len(list((minireal / "SPair-71k" / "PairAnnotation" / "test").glob("*.json")))
    assert n_pairs > 6 and "have no prediction" in printed  # 6 of the pairs were predicted
    got = json.loads((tmp_path / "scored" / "results.json").read_text())
    assert got["results"] == expected
    assert got["predictions"]["pairs_without_prediction"] == n_pairs - 6


def test_bad_prediction_files_are_named_with_the_line(spair, tmp_path):
    root, records = spair
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"pair_id": records[0].pair_id, "pred": _gt(records[0])}) + "\n{oops\n"
    )
    with pytest.raises(PredictionsError, match=r"bad\.jsonl:2: not a prediction line"):
        score_predictions(path, "spair", root, log=lambda s: None)
    _write_jsonl(path, {"000000-no-such:pair": [[1, 2]]})
    with pytest.raises(PredictionsError, match="not pairs of spair test"):
        score_predictions(path, "spair", root, log=lambda s: None)
    _write_jsonl(path, {records[0].pair_id: [[1.0, 2.0]]})
    with pytest.raises(PredictionsError, match="has 1 predictions for its"):
        score_predictions(path, "spair", root, log=lambda s: None)


def _reference_letterbox(points: np.ndarray, w: int, h: int, size: int) -> np.ndarray:
    """GeoAware-SC's preprocess_kps_pad (utils/utils_dataset.py), written out here."""
    out = points * (size / max(w, h))
    if h < w:
        out[:, 1] += int((size - int(np.around(size * h / w))) / 2)
    elif w < h:
        out[:, 0] += int((size - int(np.around(size * w / h))) / 2)
    return out


def test_geoaware_result_pkl_is_converted_to_original_pixels(spair, tmp_path):
    root, records = spair
    items = []
    for r in records:
        gt = np.nan_to_num(r.tgt_kps)
        # SPair pads to 30 rows (minireal's fly and locust have more); rows past K stay 0
        pred = np.zeros((max(30, len(gt)), 2), dtype=np.float32)
        pred[: len(gt)] = _reference_letterbox(gt, *r.tgt_size, 840)
        items.append(
            {
                "src_fn": f"data/SPair-71k/JPEGImages/{r.category}/{r.src_image.name}",
                "trg_fn": f"data/SPair-71k/JPEGImages/{r.category}/{r.tgt_image.name}",
                "src_kpts_pred": pred,
                "resize_resolution": 840,
            }
        )
    path = tmp_path / "result.pkl"
    path.write_bytes(pickle.dumps(items))
    res = score_predictions(path, "spair", root, log=lambda s: None)
    assert res["predictions"]["format"] == "geoaware-pkl"
    assert res["results"]["overall"]["pck_per_keypoint"]["0.01"] == 1.0  # exact to float32


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_unrun(spair, tmp_path):
    root, _ = spair
    marker = tmp_path / "pwned"
    path = tmp_path / "result.pkl"
    path.write_bytes(pickle.dumps([{"src_fn": _Payload(str(marker))}]))
    with pytest.raises(PredictionsError, match=r"refused: the pickle asks for (posix|os)\.system"):
        score_predictions(path, "spair", root, log=lambda s: None)
    assert not marker.exists()


class _HugeArray:
    """Unpickles through the allowed ``_reconstruct`` into a 10**10-element float64 array
    (74.5 GiB): the size must be refused before numpy allocates it."""

    def __init__(self, state: tuple | None = None) -> None:
        self.state = state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        if self.state is None:
            return (_reconstruct, (np.ndarray, (10**10,), np.dtype("f8")))
        return (_reconstruct, (np.ndarray, (0,), b"b"), self.state)


@pytest.mark.parametrize(
    "value, asked",
    [
        (_HugeArray(), "shape (10000000000,) and type float64 (74.5 GiB)"),
        (_HugeArray((1, (10**9,), np.dtype("f8"), False, b"")), "(7.45 GiB)"),  # the state
        (np.zeros((30, 2), np.float32), None),  # sanity: a real result is read
    ],
)
def test_a_pickle_asking_for_a_huge_array_is_refused_before_allocating(
    spair, tmp_path, value, asked
):
    root, records = spair
    r = records[0]
    item = {
        "src_fn": f"x/{r.category}/{r.src_image.name}",
        "trg_fn": f"x/{r.category}/{r.tgt_image.name}",
        "src_kpts_pred": value,
        "resize_resolution": 840,
    }
    path = tmp_path / "result.pkl"
    path.write_bytes(pickle.dumps([item], protocol=4))
    if asked is None:
        assert score_predictions(path, "spair", root, log=lambda s: None)["predictions"]
        return
    with pytest.raises(PredictionsError) as info:
        score_predictions(path, "spair", root, log=lambda s: None)
    text = str(info.value)
    assert text.startswith(f"{path}: cannot read it as GeoAware's result.pkl: refused")
    assert asked in text and "nothing was allocated" in text
