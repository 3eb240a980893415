"""PF-Pascal has no geometry-aware subset: its CSV rows are positions, not keypoint ids."""

from __future__ import annotations

import pytest

from corr.eval.cli import main
from corr.eval.plan import EvalOptions, tables_for


def test_tables_refuse_geo_groups_for_pfpascal(tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text('{"coco": [[1, 2]]}')
    with pytest.raises(ValueError, match=r"--geo-groups .*groups\.json.*PF-Pascal.*by position"):
        tables_for(EvalOptions("pfpascal", str(tmp_path), geo_groups=str(groups)), ["coco"])
    # the same table is accepted for SPair-71k, whose keypoints carry ids
    spair = tables_for(EvalOptions("spair", str(tmp_path), geo_groups=str(groups)), ["coco"])
    assert spair.geo == {"coco": [[1, 2]]}


def test_eval_cli_refuses_before_writing_anything(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "pfpascal",
        "--root",
        str(minireal / "PF-Pascal"),
        "--geo-groups",
        str(minireal / "geo_groups.json"),
        "--extractor",
        "dinov2-tiny",
        "--no-pretrained",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "PF-Pascal has no geometry-aware subset" in err and "drop --geo-groups" in err
    assert not out.exists()
