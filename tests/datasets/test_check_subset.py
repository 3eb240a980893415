"""``check`` on a subset of a published data set (the bundled minireal): the splits it does not
have and its smaller counts are information and the exit status is 0; a split asked for by
name, more pairs than published, an empty split, counts given by the caller and every other
problem still fail."""

from __future__ import annotations

import shutil

import pytest
from minireal_subset import copy_spair

import corr.datasets.download as download_module
from corr.datasets.__main__ import main
from corr.datasets.check import check_dataset


@pytest.mark.parametrize(
    "dataset, folder, lines",
    [
        (
            "spair",
            "SPair-71k",
            [
                "trn not in this copy (published 53,340)",
                "val not in this copy (published 5,384)",
                "test 27 of 12,234 published",
            ],
        ),
        (
            "pfpascal",
            "PF-Pascal",
            ["test 12 of 299 published", "val not in this copy (no published count)"],
        ),
    ],
)
def test_bundled_subset_is_ok_and_says_what_it_lacks(minireal, capsys, dataset, folder, lines):
    assert main(["check", dataset, "--root", str(minireal / folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for line in lines:
        assert line in out
    assert "a subset" in out and out.rstrip().endswith("OK")
    assert "PROBLEMS" not in out and "MISMATCH" not in out and "missing:" not in out


def test_a_split_asked_for_by_name_must_be_there(minireal, capsys):
    root = str(minireal / "SPair-71k")
    assert main(["check", "spair", "--root", root, "--split", "test", "--quick"]) == 0
    capsys.readouterr()
    assert main(["check", "spair", "--root", root, "--split", "train", "--quick"]) == 1
    out = capsys.readouterr().out
    assert str(minireal / "SPair-71k/PairAnnotation/trn") in out and "PROBLEMS" in out
    report = check_dataset("spair", root, splits=["test", "val"], quick=True)
    assert not report.subset and not report.ok and report.missing_splits


def test_other_problems_of_a_subset_still_fail(minireal, tmp_path, capsys):
    root = tmp_path / "SPair-71k"
    copy_spair(minireal, root)
    gone = next((root / "JPEGImages/zebra").glob("*.jpg"))
    gone.unlink()
    report = check_dataset("spair", root, quick=True)
    assert report.subset and not report.ok and [p for p, _ in report.missing_images] == [gone]
    text = report.format()
    assert "trn not in this copy" in text and text.endswith("PROBLEMS: 1 kind(s), listed above")
    assert main(["check", "spair", "--root", str(root), "--quick", "--no-progress"]) == 1


def test_more_pairs_than_published_or_an_empty_split_is_no_subset(minireal, tmp_path, monkeypatch):
    root = tmp_path / "SPair-71k"
    stems = copy_spair(minireal, root)
    real_sources = download_module.sources

    def sources():
        table = real_sources()
        spair = dict(table["spair"], published_pairs={"trn": 10, "test": len(stems) - 1})
        return {**table, "spair": spair}

    monkeypatch.setattr(download_module, "sources", sources)
    report = check_dataset("spair", root, quick=True)
    assert not report.subset and not report.ok
    assert report.count_problems == {"trn": (0, 10), "test": (len(stems), len(stems) - 1)}
    assert "MISMATCH" in report.format()
    monkeypatch.undo()
    (root / "Layout/large/test.txt").write_text("")
    empty = check_dataset("spair", root, quick=True)
    assert empty.pairs["test"] == 0 and not empty.subset and not empty.ok


def test_counts_given_by_the_caller_are_exact(minireal, tmp_path):
    root = tmp_path / "PF-Pascal"
    shutil.copytree(minireal / "PF-Pascal", root)
    report = check_dataset("pfpascal", root, published={"test": 13, "val": None})
    assert not report.subset and report.count_problems == {"test": (12, 13)}
    assert not report.ok and report.missing_splits == [root / "val_pairs_pf_pascal.csv"]
    exact = check_dataset("pfpascal", root, splits=["test"], published={"test": 12})
    assert exact.ok and not exact.subset


def test_full_copy_is_not_called_a_subset(minireal, tmp_path):
    root = tmp_path / "SPair-71k"
    stems = copy_spair(minireal, root)
    report = check_dataset("spair", root, published={"test": len(stems)})
    assert report.ok and not report.subset and "a subset" not in report.format()


def test_missing_data_advice_depends_on_what_is_missing(tmp_path, monkeypatch):
    from corr.datasets.download import bundled_subset, download_hint

    monkeypatch.chdir(tmp_path)
    # a folder that is not there, under a parent that is not there either (a minireal path
    # copied from a checkout with shared/ beside it): download into data/, not into "minireal"
    hint = download_hint("spair", "../shared/data/minireal/SPair-71k")
    assert "download spair --root data (makes data/SPair-71k" in hint
    assert "minireal --" not in hint and "--root ../shared" not in hint
    assert f"--root {bundled_subset('spair')}" in hint and "not benchmark figures" in hint
    # the user's own data folder (there or not yet): download there
    hint = download_hint("spair", tmp_path / "mydata" / "SPair-71k")
    assert f"--root {tmp_path / 'mydata'} (makes {tmp_path / 'mydata' / 'SPair-71k'}" in hint
    # a folder that exists but lacks files: what it lacks too, and no subset advice
    (tmp_path / "half").mkdir()
    hint = download_hint("spair", tmp_path / "half")
    assert (
        f"to see what this folder lacks: python -m corr.datasets check spair --root {tmp_path / 'half'}"
        in hint
    )
    assert "minireal" not in hint
    assert bundled_subset("ap10k") is None  # no bundled AP-10K subset
