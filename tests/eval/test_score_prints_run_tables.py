"""``python -m corr.eval score RUN`` prints the same tables the run printed."""

from __future__ import annotations

from corr.eval.cli import main


def _tables(printed: str) -> str:
    """The block from the first PCK table to the line naming the result files."""
    lines = printed.splitlines()
    start = next(i for i, ln in enumerate(lines) if "per image" in ln or "category" in ln)
    end = next(i for i, ln in enumerate(lines) if ln.startswith("results: "))
    return "\n".join(lines[start : end + 1])


def test_score_of_a_flip_run_prints_every_table_of_the_run(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "spair",
        "--root",
        str(minireal / "SPair-71k"),
        "--flip-table",
        str(minireal / "flip.json"),
        "--flip",
        "--geo-groups",
        str(minireal / "geo_groups.json"),
        "--extractor",
        "dinov2-tiny",
        "--no-pretrained",
        "--limit",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    run_printed = _tables(capsys.readouterr().out)
    assert "Without pose alignment" in run_printed and "Pose alignment:" in run_printed
    assert main(["score", str(out)]) == 0
    score_printed = _tables(capsys.readouterr().out)
    assert score_printed == run_printed
