"""Every name read from a data file that becomes a path is checked before any file is opened.

One test per field (SPair-71k ``category``, ``src_imname``, ``trg_imname`` and the Layout list's
pair stems; SPair-U ``category`` and ``trg_imname``; PF-Pascal ``source_image`` and
``target_image``; PF-Willow ``imageA`` and ``imageB``; AP-10K ``src/trg_json_path`` and
``src/trg_image``; the raw AP-10K release's ``file_name``): the error names the file, the line
(where the file has lines) and the field, and says what to do; the bait file the name leads to
is never read (tests/datasets/test_no_open_outside_root.py proves that with an audit hook).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hostile_data import CASES, load_case, make_case

from corr.datasets import load_spair
from corr.datasets.check import check_dataset


def _expected(case) -> str:
    where = f"{re.escape(str(case.file))}"
    if case.line is not None:
        where += f" line {case.line}"
    if case.dataset == "ap10k-raw":
        where += r", image \d+"
    return rf"(?s){where}, field '{case.field}': .* leaves the data set folder .*restore"


@pytest.mark.parametrize("name", CASES)
def test_a_name_leaving_the_folder_is_refused_naming_file_line_and_field(
    name: str, minireal: Path, tmp_path: Path
) -> None:
    case = make_case(name, minireal, tmp_path)
    with pytest.raises(ValueError, match=_expected(case)) as err:
        load_case(case, tmp_path / "out")
    assert (err.value.file, err.value.line, err.value.field) == (case.file, case.line, case.field)
    assert not (tmp_path / "out" / "JPEGImages").exists()  # the builder wrote nothing


@pytest.mark.parametrize("name", [c for c in CASES if not c.startswith("ap10k-raw")])
def test_check_reports_the_name_instead_of_reading_outside(
    name: str, minireal: Path, tmp_path: Path
) -> None:
    case = make_case(name, minireal, tmp_path)
    report = check_dataset(case.dataset, case.root, splits=["test"], progress=False)
    assert not report.ok
    assert [p for p, _ in report.outside] == [case.file], report.format()
    assert f"field '{case.field}'" in report.outside[0][1]
    assert "outside the data set folder" in report.format()


def test_data_path_rules(tmp_path: Path) -> None:
    from corr.datasets.paths import DataPathError, data_path

    ok = data_path(tmp_path, "cat/a.jpg", file="p.json", field="f", under="JPEGImages")
    assert ok == tmp_path / "JPEGImages" / "cat" / "a.jpg"
    assert data_path(tmp_path, "a\\b.jpg", file="p", field="f") == tmp_path / "a" / "b.jpg"
    bad = {
        "../x": "'..'",
        "a/../../x": "'..'",
        "/etc/passwd": "absolute",
        "C:/x": "absolute",
        "\\\\server\\x": "absolute",
        "": "empty",
        ".": "empty",
        "a\0b": "NUL",
    }
    for name, why in bad.items():
        with pytest.raises(DataPathError, match=f"{why}.*restore"):
            data_path(tmp_path, name, file="p.txt", line=4, field="f")
    for value in (None, 3, ["a"]):
        with pytest.raises(DataPathError, match=r"p.txt line 4, field 'f': .* not a file name"):
            data_path(tmp_path, value, file="p.txt", line=4, field="f")
    # a name relative to the parent (PF-Pascal's layout) must still land inside the root
    root = tmp_path / "PF-dataset-PASCAL"
    assert data_path(root, "PF-dataset-PASCAL/J/a.jpg", file="c", field="f", base=tmp_path) == (
        root / "J" / "a.jpg"
    )
    with pytest.raises(DataPathError, match="leaves the data set folder"):
        data_path(root, "other/a.jpg", file="c", field="f", base=tmp_path)


def test_a_clean_copy_still_loads(minireal: Path) -> None:
    assert load_spair(minireal / "SPair-71k")
