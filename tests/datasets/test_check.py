"""``python -m corr.datasets check``: layout, annotations, images and pair counts of a copy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from minireal_subset import copy_spair
from synthetic_ap10k import make_ap10k_raw

from corr.datasets.__main__ import main
from corr.datasets.ap10k import build_ap10k
from corr.datasets.check import check_dataset


def make_ap10k(base: Path) -> Path:
    """Build a small AP-10K benchmark (2 families, 3 species) from a synthetic raw release."""
    raw = base / "raw"
    make_ap10k_raw(raw)
    build_ap10k(raw, base / "AP-10K")
    return base / "AP-10K"


def paths(items: list) -> list[Path]:
    return [p for p, _ in items]


# ------------------------------------------------------------------------------- SPair-71k


def test_complete_spair_copy_is_ok(minireal: Path, tmp_path: Path) -> None:
    stems = copy_spair(minireal, tmp_path / "SPair-71k")
    report = check_dataset("spair", tmp_path / "SPair-71k", published={"test": len(stems)})
    assert report.ok, report.format()
    assert report.pairs == {"test": len(stems)} and report.images_checked == 12
    assert report.format().endswith("OK")


def test_minireal_spair_against_the_published_counts(minireal: Path) -> None:
    """The bundled subset: its absent splits and smaller count are information (a subset)."""
    n = len((minireal / "SPair-71k/Layout/large/test.txt").read_text().split())
    report = check_dataset("spair", minireal / "SPair-71k", progress=False)
    assert report.count_mismatches == {"trn": (0, 53340), "val": (0, 5384), "test": (n, 12234)}
    assert not report.missing_images and not report.unreadable_images
    assert not report.unreadable_annotations and not report.missing_annotations
    assert report.absent_splits["trn"] == minireal / "SPair-71k/PairAnnotation/trn"
    assert report.subset and report.ok and not report.layout_missing
    text = report.format()
    assert f"test {n} of 12,234 published" in text and "trn not in this copy" in text
    assert "MISMATCH" not in text and text.endswith("OK")
    one = check_dataset("spair", minireal / "SPair-71k", splits=["test"])
    assert one.count_mismatches == {"test": (n, 12234)} and not one.layout_missing and one.ok


def test_spair_problems_are_each_named(minireal: Path, tmp_path: Path) -> None:
    root = tmp_path / "SPair-71k"
    stems = copy_spair(minireal, root)
    gone_image = root / "JPEGImages/fly/fly_1400_flip.jpg"
    gone_image.unlink()
    cut_image = root / "JPEGImages/zebra/zebra_850.jpg"
    cut_image.write_bytes(cut_image.read_bytes()[: cut_image.stat().st_size * 6 // 10])
    bad_ann = root / "ImageAnnotation/locust/locust_630_flip.json"
    bad_ann.write_text('{"kps": {')
    gone_ann = root / "ImageAnnotation/zebra/zebra_810_flip.json"
    gone_ann.unlink()
    gone_pair = root / "PairAnnotation/test/000034-fly_1450-fly_1450_flip:fly.json"
    gone_pair.unlink()
    bad_pair = root / "PairAnnotation/test/000071-zebra_810-zebra_850:zebra.json"
    data = json.loads(bad_pair.read_text())
    del data["trg_imname"]
    bad_pair.write_text(json.dumps(data))

    report = check_dataset("spair", root, published={"test": len(stems)})
    assert paths(report.missing_images) == [gone_image]
    assert paths(report.unreadable_images) == [cut_image]
    unreadable = paths(report.unreadable_annotations)
    assert bad_ann in unreadable and bad_pair in unreadable
    assert root / "PairAnnotation/test/000045-locust_630-locust_630_flip:locust.json" in unreadable
    assert sorted(paths(report.missing_annotations)) == sorted([gone_ann, gone_pair])
    assert report.pairs == {"test": len(stems)} and not report.count_mismatches
    text = report.format()
    for p in (gone_image, cut_image, bad_ann, bad_pair, gone_ann, gone_pair):
        assert str(p) in text
    assert text.endswith("PROBLEMS: 4 kind(s), listed above")
    quick = check_dataset("spair", root, published={"test": len(stems)}, quick=True)
    assert paths(quick.missing_images) == [gone_image] and quick.unreadable_images == []


# ------------------------------------------------------------------------------- PF-Pascal


def pf_rows(root: Path) -> list[list[str]]:
    return [r.split(",") for r in (root / "test_pairs_pf_pascal.csv").read_text().split()[1:]]


def test_minireal_pfpascal_against_the_published_count(minireal: Path) -> None:
    rows = pf_rows(minireal / "PF-Pascal")
    report = check_dataset("pfpascal", minireal / "PF-Pascal")
    assert report.pairs["test"] == len(rows) and report.count_mismatches == {
        "test": (len(rows), 299)
    }
    assert report.absent_splits == {"val": minireal / "PF-Pascal/val_pairs_pf_pascal.csv"}
    assert report.subset and report.ok and not report.layout_missing
    assert report.images_checked == len({c for r in rows for c in r[:2]})
    assert not report.missing_images and not report.unreadable_images
    assert f"test {len(rows)} of 299 published" in report.format()


def test_pfpascal_bad_row_and_missing_image(minireal: Path, tmp_path: Path) -> None:
    root = tmp_path / "PF-Pascal"
    shutil.copytree(minireal / "PF-Pascal", root)
    csv = root / "test_pairs_pf_pascal.csv"
    lines = csv.read_text().splitlines()
    victim = root / lines[1].split(",")[1]
    victim.unlink()
    n = len(pf_rows(root))
    ok = check_dataset("pfpascal", root, splits=["test"], published={"test": n})
    assert paths(ok.missing_images) == [victim] and not ok.unreadable_annotations
    cells = lines[2].split(",")
    cells[3] = "12.0;oops"
    csv.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n")
    bad = check_dataset("pfpascal", root, splits=["test"], published={"test": n})
    assert paths(bad.unreadable_annotations) == [csv]
    assert (
        "row 2" in bad.unreadable_annotations[0][1] and "oops" in bad.unreadable_annotations[0][1]
    )


# ---------------------------------------------------------------------------------- AP-10K


def test_ap10k_built_copy_matches_its_manifest(tmp_path: Path, capsys) -> None:
    root = make_ap10k(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    assert main(["check", "ap10k", "--root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK") and "manifest.json" in out
    report = check_dataset("ap10k", root)
    assert report.pairs == manifest["pairs"] and report.expected == manifest["pairs"]
    victim = sorted((root / "PairAnnotation/test_cross_species").glob("*.json"))[0]
    victim.unlink()
    ann = sorted((root / "ImageAnnotation").rglob("*.json"))[0]
    ann.write_text("[")
    report = check_dataset("ap10k", root)
    n = manifest["pairs"]["test_cross_species"]
    assert report.count_mismatches == {"test_cross_species": (n - 1, n)}
    assert ann in paths(report.unreadable_annotations)
    assert main(["check", "ap10k", "--root", str(root), "--no-progress"]) == 1


# --------------------------------------------------------------------------------------- CLI


def test_cli_missing_root_names_the_download_command(tmp_path: Path, capsys) -> None:
    assert main(["check", "spair", "--root", str(tmp_path / "data/SPair-71k")]) == 2
    err = capsys.readouterr().err
    assert f"python -m corr.datasets download spair --root {tmp_path / 'data'}" in err


def test_cli_check_loads_no_model_code(minireal: Path) -> None:
    code = (
        "import sys\n"
        "from corr.datasets.__main__ import main\n"
        f"rc = main(['check', 'pfpascal', '--root', {str(minireal / 'PF-Pascal')!r}, '--quick'])\n"
        "print([m for m in ('torch', 'timm', 'diffusers') if m in sys.modules], rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "[] 0"
    assert "of 299 published" in out.stdout


@pytest.mark.parametrize("args", [["check", "cub", "--root", "x"], ["check", "spair"]])
def test_cli_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(args)
    assert err.value.code == 2
