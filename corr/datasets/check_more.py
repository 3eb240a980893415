"""``python -m corr.datasets check`` for SPair-U, PF-Willow and TSS (the report and its rules are
:mod:`corr.datasets.check`'s): layout, annotations, images, names leaving the folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .check import CheckReport, check_record_images, progress_bar, root_missing, scan_json
from .paths import DataPathError
from .pfwillow import PFWILLOW_LAYOUT, load_pfwillow, locate_pfwillow
from .records import DatasetLayoutError, PairRecord
from .spair import SpairAnnotations, load_spair_pair
from .spair_u import SPAIR_U, SPAIR_U_LAYOUT
from .tss import TSS_LAYOUT, TSS_SUBSETS, TssPair, load_tss, read_flo, read_mask

__all__ = ["CHECKS", "check_spair_u", "check_pfwillow", "check_tss"]


def check_spair_u(
    root: Path, report: CheckReport, splits: Sequence[str], quick: bool, progress: bool | None
) -> None:
    """SPair-U in a SPair-71k folder: ``JPEGImages`` and the ``Extra*`` annotation folders,
    every pair file read as :func:`corr.datasets.load_spair_u` reads it, its images."""
    if not root.is_dir():
        raise root_missing("spair-u", report.title, SPAIR_U_LAYOUT, root)
    for sub in ("JPEGImages", SPAIR_U.images, SPAIR_U.pairs):
        if not (root / sub).is_dir():
            report.layout_missing.append(root / sub)
    scan_json(root / SPAIR_U.images, report, progress)
    bad_ann = {p for p, _ in report.unreadable_annotations}
    anns = SpairAnnotations(SPAIR_U.title)
    records: list[PairRecord] = []
    for split in splits:
        pair_dir = root / SPAIR_U.pairs / split
        if not pair_dir.is_dir():
            report.absent_splits[split] = pair_dir
            report.pairs[split] = 0
            continue
        files = sorted(pair_dir.glob("*.json"))
        report.pairs[split] = len(files)
        for path in progress_bar(files, f"pairs {split}", progress):
            try:
                rec = load_spair_pair(path, root, anns, SPAIR_U)
            except DataPathError as err:
                report.outside.append((err.file, str(err)))
                continue
            except (ValueError, KeyError, TypeError, IndexError, OSError) as err:
                report.unreadable_annotations.append((path, str(err)))
                continue
            report.annotations_read += 1
            for side in rec.flags.get("missing_annotation", []):
                name = rec.src_image if side == "src" else rec.tgt_image
                ann = root / SPAIR_U.images / rec.category / f"{Path(name).stem}.json"
                if ann not in bad_ann:
                    report.missing_annotations.append((ann, f"needed by pair {rec.pair_id}"))
            records.append(rec)
    report.missing_annotations = list(dict.fromkeys(report.missing_annotations))
    check_record_images(records, report, quick, progress)


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
        try:
            recs = load_pfwillow(root, split)
        except DataPathError as err:
            report.outside.append((err.file, str(err)))
            report.pairs[split] = 0
            continue
        except (ValueError, OSError) as err:
            report.unreadable_annotations.append((csv_path, str(err)))
            report.pairs[split] = 0
            continue
        report.annotations_read += 1
        report.pairs[split] = len(recs)
        records += recs
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
    "spair-u": check_spair_u,
    "pfwillow": check_pfwillow,
    "tss": check_tss,
}
