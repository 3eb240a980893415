"""The check of each data set's folder for ``python -m corr.datasets check`` (the report, its
rules and :func:`~.check.check_dataset`, which calls these, are :mod:`corr.datasets.check`'s):
layout, annotations, images, names leaving the folder. SPair-71k and SPair-U share one check
(:func:`check_spair_format`), PF-Pascal and PF-Willow one CSV reader (:func:`~.check.load_split`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from .ap10k import AP10K_LAYOUT, AP10K_SUBSETS, load_ap10k
from .check import (
    CheckReport,
    check_record_images,
    load_split,
    progress_bar,
    root_missing,
    scan_json,
)
from .paths import DataPathError
from .pfpascal import PFPASCAL_LAYOUT, load_pfpascal, locate_pfpascal
from .pfwillow import PFWILLOW_LAYOUT, load_pfwillow, locate_pfwillow
from .records import DatasetLayoutError, PairRecord, numbered_lines
from .spair import SPAIR, SpairAnnotations, listed_pair_path, load_spair_pair, spair_split
from .spair_u import SPAIR_U
from .tss import TSS_LAYOUT, TSS_SUBSETS, TssPair, load_tss, read_flo, read_mask

__all__ = [
    "CHECKS",
    "check_spair_format",
    "check_spair_u",
    "check_pfpascal",
    "check_pfwillow",
    "check_ap10k",
    "check_tss",
]


# ------------------------------------------------------------------------------------- SPair


def check_spair_format(
    root: Path,
    report: CheckReport,
    splits: Sequence[str],
    quick: bool,
    progress: bool | None,
    variant=None,
) -> None:
    """A folder of SPair-71k-format annotations: SPair-71k itself (``variant`` None) or
    another :class:`~.spair.SpairVariant` (SPair-U's ``Extra*`` folders): the layout, every
    pair file read as the loader reads it, the image annotations it needs, its images.
    SPair-71k's pairs come from ``Layout/large/{split}.txt`` when it is there (its absence is
    reported); a variant's from its pair folder."""
    v = variant or SPAIR
    if not root.is_dir():
        raise root_missing(v.dataset, report.title, v.layout, root)
    for sub in ("JPEGImages", v.images, v.pairs):
        if not (root / sub).is_dir():
            report.layout_missing.append(root / sub)
    scan_json(root / v.images, report, progress)
    bad_ann = {p for p, _ in report.unreadable_annotations}
    anns = SpairAnnotations(v.title)
    records: list[PairRecord] = []
    for split in splits:
        split = spair_split(split)
        pair_dir = root / v.pairs / split
        layout_file = root / "Layout" / "large" / f"{split}.txt"
        if v is SPAIR and layout_file.is_file():
            files = []
            for line, stem in numbered_lines(layout_file):
                try:
                    files.append(listed_pair_path(root, split, stem, layout_file, line))
                except DataPathError as err:
                    report.outside.append((err.file, str(err)))
            files = list(dict.fromkeys(files))
        elif pair_dir.is_dir():
            if v is SPAIR:
                report.layout_missing.append(layout_file)
            files = sorted(pair_dir.glob("*.json"))
        else:
            report.absent_splits[split] = pair_dir
            report.pairs[split] = 0
            continue
        report.pairs[split] = len(files)
        for path in progress_bar(files, f"pairs {split}", progress):
            if not path.is_file():
                report.missing_annotations.append((path, f"listed in {layout_file}"))
                continue
            try:
                rec = load_spair_pair(path, root, anns, v)
            except DataPathError as err:
                report.outside.append((err.file, str(err)))
                continue
            except (ValueError, KeyError, TypeError, IndexError, OSError) as err:
                report.unreadable_annotations.append((path, str(err)))
                continue
            report.annotations_read += 1
            for side in rec.flags.get("missing_annotation", []):
                name = rec.src_image if side == "src" else rec.tgt_image
                ann = root / v.images / rec.category / f"{Path(name).stem}.json"
                if ann not in bad_ann:
                    report.missing_annotations.append((ann, f"needed by pair {rec.pair_id}"))
            records.append(rec)
    report.missing_annotations = list(dict.fromkeys(report.missing_annotations))
    check_record_images(records, report, quick, progress)


# ---------------------------------------------------------------------------------- PF-Pascal


def check_pfpascal(
    root: Path, report: CheckReport, splits: Sequence[str], quick: bool, progress: bool | None
) -> None:
    """PF-Pascal: the split CSVs, ``PF-dataset-PASCAL/JPEGImages`` and every image."""

    if not root.is_dir():
        raise root_missing("pfpascal", report.title, PFPASCAL_LAYOUT, root)
    records: list[PairRecord] = []
    base = None
    for split in splits:
        try:
            csv_path, base = locate_pfpascal(root, split)
        except DatasetLayoutError as err:
            report.absent_splits[split] = err.missing
            report.pairs[split] = 0
            continue
        records += load_split(report, load_pfpascal, root, split, csv_path)
    if base is None:
        base = root.parent if root.name == "PF-dataset-PASCAL" else root
    images = base / "PF-dataset-PASCAL" / "JPEGImages"
    if not images.is_dir():
        report.layout_missing.append(images)
    check_record_images(records, report, quick, progress)


# ------------------------------------------------------------------------------------ AP-10K


def check_ap10k(
    root: Path, report: CheckReport, splits: Sequence[str], quick: bool, progress: bool | None
) -> None:
    """A built AP-10K folder: its layout, ``manifest.json``'s counts, every split folder's
    pair files (read as the loader reads them) and their images."""

    if not root.is_dir():
        raise root_missing("ap10k", report.title, AP10K_LAYOUT, root)
    for sub in ("JPEGImages", "ImageAnnotation", "PairAnnotation"):
        if not (root / sub).is_dir():
            report.layout_missing.append(root / sub)
    manifest_path = root / "manifest.json"
    manifest_pairs: dict[str, int] = {}
    if not manifest_path.is_file():
        report.layout_missing.append(manifest_path)
    else:
        try:
            manifest_pairs = {
                k: int(v) for k, v in json.loads(manifest_path.read_text())["pairs"].items()
            }
            report.expected = {k: manifest_pairs[k] for k in sorted(manifest_pairs)}
            report.expected_from = f"{manifest_path} (the builder's counts)"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            report.unreadable_annotations.append((manifest_path, str(err)))
    scan_json(root / "ImageAnnotation", report, progress)
    scan_json(root / "PairAnnotation", report, progress)
    subset_of = {suffix: subset for subset, suffix in AP10K_SUBSETS.items()}
    wanted = (
        list(splits)
        or sorted(manifest_pairs)
        or sorted(p.name for p in (root / "PairAnnotation").glob("*") if p.is_dir())
    )
    if splits:
        report.expected = {k: v for k, v in report.expected.items() if k in wanted}
    records: list[PairRecord] = []
    for split_dir in wanted:
        split, _, rest = split_dir.partition("_")
        subset = subset_of.get("_" + rest if rest else "")
        folder = root / "PairAnnotation" / split_dir
        if subset is None or split not in ("test", "val"):
            report.unreadable_annotations.append((folder, "not an AP-10K split folder"))
            continue
        if not folder.is_dir():
            report.absent_splits[split_dir] = folder
            report.pairs[split_dir] = 0
            continue
        report.pairs[split_dir] = len(list(folder.glob("*.json")))
        try:
            records += load_ap10k(root, subset=subset, split=split)
        except DataPathError as err:
            report.outside.append((err.file, str(err)))
        except (ValueError, KeyError, TypeError, OSError) as err:
            report.unreadable_annotations.append((folder, f"{type(err).__name__}: {err}"))
    check_record_images(records, report, quick, progress)


def check_spair_u(
    root: Path, report: CheckReport, splits: Sequence[str], quick: bool, progress: bool | None
) -> None:
    """SPair-U in a SPair-71k folder: ``JPEGImages`` and the ``Extra*`` annotation folders,
    every pair file read as :func:`corr.datasets.load_spair_u` reads it, its images
    (:func:`~.check.check_spair_format` with SPair-U's folders)."""
    check_spair_format(root, report, splits, quick, progress, SPAIR_U)


def check_pfwillow(
    root: Path, report: CheckReport, splits: Sequence[str], quick: bool, progress: bool | None
) -> None:
    """PF-Willow: the pair list (``test_pairs_pf.csv``), ``PF-dataset/`` and every image."""
    if not root.is_dir():
        raise root_missing("pfwillow", report.title, PFWILLOW_LAYOUT, root)
    records: list[PairRecord] = []
    for split in splits:
        try:
            csv_path, base = locate_pfwillow(root)
        except DatasetLayoutError as err:
            report.absent_splits[split] = err.missing
            report.pairs[split] = 0
            continue
        if not (base / "PF-dataset").is_dir():
            report.layout_missing.append(base / "PF-dataset")
        records += load_split(report, load_pfwillow, root, split, csv_path)
    check_record_images(records, report, quick, progress)


def check_tss(
    root: Path, report: CheckReport, splits: Sequence[str], quick: bool, progress: bool | None
) -> None:
    """TSS: the three subset folders, every folder's six files, each flow and mask readable and
    of its image's size, and (unless ``quick``) every image decoded."""
    if not root.is_dir():
        raise root_missing("tss", report.title, TSS_LAYOUT, root)
    for split in splits:
        pairs = []
        for subset in TSS_SUBSETS:
            try:
                pairs += load_tss(root, split, subsets=(subset,))
            except DatasetLayoutError as err:
                report.layout_missing.append(err.missing)
        report.pairs[split] = len(pairs)
        for pair in progress_bar(pairs, f"flows {split}", progress):
            try:
                flow, mask = read_flo(pair.flow), read_mask(pair.mask)
            except (OSError, ValueError) as err:
                report.unreadable_annotations.append((pair.flow, str(err)))
                continue
            report.annotations_read += 1
            w, h = pair.tgt_size
            if flow.shape[:2] != (h, w) or mask.shape != (h, w):
                why = f"{flow.shape[1]} x {flow.shape[0]} (mask {mask.shape[1]} x {mask.shape[0]})"
                report.unreadable_annotations.append(
                    (pair.flow, f"{why}, but {pair.tgt_image.name} is {w} x {h}")
                )
        seen: dict[Path, PairRecord] = {}
        for pair in pairs:  # images as records, for the shared image check
            seen.setdefault(pair.src_image, _image_record(pair))
        check_record_images(list(seen.values()), report, quick, progress)


def _image_record(pair: TssPair) -> PairRecord:
    """A keypoint-free record of a TSS pair's two images (for :func:`check_record_images`)."""
    import numpy as np

    empty = np.zeros((0, 2))
    return PairRecord(
        dataset="tss", pair_id=pair.pair_id, category=pair.category, src_image=pair.src_image,
        tgt_image=pair.tgt_image, src_kps=empty, tgt_kps=empty, src_vis=np.zeros(0, bool),
        tgt_vis=np.zeros(0, bool), pck_size=pair.pck_size, src_size=pair.src_size,
        tgt_size=pair.tgt_size, src_bbox=None, tgt_bbox=None,
    )  # fmt: skip


#: data set -> its check (called by :func:`corr.datasets.check.check_dataset`)
CHECKS: dict[str, Callable[..., None]] = {
    "spair": check_spair_format,
    "spair-u": check_spair_u,
    "pfpascal": check_pfpascal,
    "pfwillow": check_pfwillow,
    "tss": check_tss,
    "ap10k": check_ap10k,
}
