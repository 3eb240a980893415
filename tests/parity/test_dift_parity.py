"""DIFT's pixel-level matching and its inclusive PCK (golden/dift_matching.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corr.datasets import PairRecord
from corr.matching import pixel_match
from corr.metrics import evaluate


def test_pixel_matching_matches_dift(golden):
    data = golden("dift_matching.json")
    coords, _ = pixel_match(
        torch.tensor(data["src_ft"]),
        torch.tensor(data["tgt_ft"]),
        torch.tensor(data["src_kps"]),
        tuple(data["src_size"]),
        tuple(data["tgt_size"]),
        channel_chunk=5,
    )
    assert coords.long().tolist() == data["pred"]


@pytest.mark.parametrize("inclusive", [True, False])
def test_inclusive_pck_matches_dift(golden, inclusive):
    data = golden("dift_matching.json")
    k = len(data["src_kps"])
    x1, y1, x2, y2 = data["tgt_bbox"]
    rec = PairRecord(
        "spair", "p", "cat", Path("a.jpg"), Path("b.jpg"),
        np.asarray(data["src_kps"], float), np.asarray(data["tgt_kps"], float),
        np.ones(k, bool), np.ones(k, bool), float(max(x2 - x1, y2 - y1)),
        tuple(data["src_size"]), tuple(data["tgt_size"]), None, (x1, y1, x2, y2),
    )  # fmt: skip
    res = evaluate([rec], [np.asarray(data["pred"], float)], [0.1], inclusive=inclusive)
    expected = sum(data["correct_at_0.10"]) if inclusive else 1  # strict: only the exact hit
    assert res["overall"]["pck_per_keypoint"]["0.10"] == pytest.approx(expected / k)
