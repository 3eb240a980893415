"""Issue 14.3, 14.7, 14.7a and the command-line cases of 7b: bad input to ``python -m corr.eval``
(and the AP-10K builder) is one line naming the input and the fix, refused before anything is
written; ``score`` never rewrites a predictions file (the run repairs it)."""

from __future__ import annotations

import json
import shutil

import pytest
from fault_points import eval_args

from corr.datasets.ap10k import main as ap10k_main
from corr.eval.cli import main

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("error:") == 1, err
    line = err.splitlines()[-1]
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--limit", "0"], "--limit must be a positive number of pairs, got 0"),
        (["--limit", "-1"], "--limit must be a positive number of pairs, got -1"),
        (["--window", "-1"], "window must be >= 0 and temperature > 0, got window=-1"),
        (["--temperature", "0"], "temperature > 0, got window=5, temperature=0.0"),
        (
            ["--extractor", "corr.contrib.mobilenet:DEFAULT_STAGES"],
            "'DEFAULT_STAGES' is a tuple, not a factory function",
        ),
        (  # a callable that is no factory (issue 23.10: it was a TypeError traceback)
            ["--extractor", "corr.io:load_image"],
            "load_image() takes no 'pretrained' argument, so it is not an extractor factory",
        ),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    minireal, tmp_path, capsys, extra, message
):
    out = tmp_path / "run"
    assert main([*eval_args(minireal, out), *extra]) == 2
    assert message in _error_line(capsys)
    assert not out.exists()  # no config.json that would block the corrected command
    assert main(eval_args(minireal, out, limit=1)) == 0  # the corrected command runs


def test_a_huge_window_is_capped_at_the_grid(minireal, tmp_path):
    runs = {w: tmp_path / f"w{w}" for w in ("100000", "10000")}
    for w, out in runs.items():
        assert main([*eval_args(minireal, out, limit=2), "--window", w]) == 0
    a, b = (json.loads((o / "results.json").read_text())["results"] for o in runs.values())
    assert a == b


def test_annotation_paths_that_leave_the_root_are_refused(minireal, tmp_path, capsys):
    root = tmp_path / "SPair-71k"
    shutil.copytree(minireal / "SPair-71k", root)
    pair = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    data = json.loads(pair.read_text())
    data["trg_imname"] = "../../../../etc/passwd"
    pair.write_text(json.dumps(data))
    args = eval_args(minireal, tmp_path / "run")
    args[args.index("--root") + 1] = str(root)
    assert main(args) == 2
    line = _error_line(capsys)
    assert pair.name in line and "../../../../etc/passwd' leaves the data set folder" in line


def test_score_reports_a_bad_middle_line_and_never_rewrites_the_file(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(eval_args(minireal, out)) == 0
    pred = out / "predictions.jsonl"
    lines = pred.read_bytes().split(b"\n")
    damaged_pair = json.loads(lines[1])["pair_id"]
    lines[1] = lines[1][: len(lines[1]) // 2]  # a corrupted middle line
    damaged = b"\n".join(lines)
    pred.write_bytes(damaged)
    capsys.readouterr()
    assert main(["score", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"warning: {pred}:2: not a prediction record" in printed
    assert pred.read_bytes() == damaged  # every good prediction after it is still there
    # the evaluation command removes the damaged line (one atomic rewrite keeping the good
    # lines in order, issue 23.11) and recomputes its pair
    assert main(eval_args(minireal, out)) == 0
    printed = capsys.readouterr().out
    assert f"{pred}:2: not a prediction record; removed from the file" in printed
    assert "resuming: 3 of 4 pairs already done" in printed
    kept = pred.read_bytes().split(b"\n")
    assert kept[:3] == [lines[0], lines[2], lines[3]] and len(kept) == 4 + 1
    assert json.loads(kept[3])["pair_id"] == damaged_pair  # recomputed, appended
    # so the next run finds the file clean and warns no more
    assert main(eval_args(minireal, out)) == 0
    printed = capsys.readouterr().out
    assert "warning" not in printed and "resuming: 4 of 4 pairs already done" in printed


def test_ap10k_builder_names_a_raw_image_without_width(tmp_path, capsys):
    ann = tmp_path / "raw" / "annotations"
    ann.mkdir(parents=True)
    empty = {"images": [], "annotations": [], "categories": []}
    for name in ("ap10k-train-split1.json", "ap10k-val-split1.json"):
        (ann / name).write_text(json.dumps(empty))
    image = {"id": 7, "file_name": "000000000007.jpg", "height": 12}
    (ann / "ap10k-test-split1.json").write_text(json.dumps({**empty, "images": [image]}))
    assert ap10k_main(["build", "--src", str(tmp_path / "raw"), "--out", str(tmp_path / "o")]) == 2
    line = _error_line(capsys)
    assert str(ann / "ap10k-test-split1.json") in line
    assert "image 7 (000000000007.jpg) has no width" in line
    assert not (tmp_path / "o").exists()
