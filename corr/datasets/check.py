"""Validate a benchmark folder: ``python -m corr.datasets check NAME --root DIR``.

Reports, for SPair-71k, PF-Pascal or a built AP-10K folder:

* the layout: required folders and files that are missing;
* annotations: pair files listed but missing, image annotations missing, and files that cannot
  be read (malformed JSON, a bad CSV row, missing fields), each by path;
* images: files the pairs need that are missing or cannot be decoded (``quick``: only that each
  exists and has a readable header);
* the number of pairs per split against the published counts (``sources.json``; for AP-10K the
  counts the builder wrote into ``manifest.json``); a *subset* of the published data set (see
  :attr:`CheckReport.subset`, e.g. the repository's ``tests/data/minireal``) is reported as
  such: the splits it does not have and its smaller counts are information, not problems;
* files outside the data set folder: a name in a data file that leaves it (refused by the
  loaders, :func:`~.records.data_path`), and, checked first, every symbolic link in the folder
  whose real target (all links followed) lies outside it. Such links are listed and the folder is
  not read further, so the check itself never opens a file outside the folder. The one
  exception: images of an AP-10K build made with ``--link-images`` may link into the raw release
  beside it (``ROOT/../ap-10k/data``, the folder ``download ap10k --link-images`` links to).

Nothing here imports model code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .paths import DataPathError, links_leaving
from .records import (
    DatasetLayoutError,
    PairRecord,
    check_images,
    image_size,
)

__all__ = [
    "CHECKED",
    "check_dataset",
    "check_record_images",
    "load_split",
    "CheckReport",
    "progress_bar",
    "root_missing",
    "scan_json",
]

_SHOW = 10  # examples printed per kind of problem


@dataclass
class CheckReport:
    """The findings of :func:`check_dataset`; ``ok`` is True when nothing is wrong."""

    dataset: str
    title: str
    root: Path
    layout_missing: list[Path] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)  # split -> pairs found (listed)
    expected: dict[str, int | None] = field(default_factory=dict)  # split -> published count
    expected_from: str = ""
    annotations_read: int = 0
    missing_annotations: list[tuple[Path, str]] = field(default_factory=list)  # (path, needed by)
    unreadable_annotations: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)
    images_checked: int = 0
    decoded: bool = True
    missing_images: list[tuple[Path, str]] = field(default_factory=list)  # (path, pair id)
    unreadable_images: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)
    outside: list[tuple[Path, str]] = field(default_factory=list)  # (file or link, why)
    not_checked: str = ""  # why the folder was not read (links leading outside it)
    absent_splits: dict[str, Path] = field(default_factory=dict)  # split -> its missing list
    named_splits: list[str] = field(default_factory=list)  # splits the caller asked for
    expected_is_published: bool = False  # expected = the published counts of the full release

    @property
    def subset(self) -> bool:
        """True when this copy is a subset of the published data set: the counts compared
        with are the full release's published ones (not a builder's manifest, not counts the
        caller gave), at least one split is present, every present split holds at least one
        and at most its published number of pairs, every split the caller named is present,
        and something is less than published (a split absent, or fewer pairs). A subset's
        absent splits and smaller counts are information; anything else found wrong in it is
        still a problem."""
        present = [s for s in self.pairs if s not in self.absent_splits]
        if not self.expected_is_published or not present:
            return False
        if any(s in self.absent_splits for s in self.named_splits):
            return False
        short = False
        for split in present:
            found, want = self.pairs[split], self.expected.get(split)
            if found < 1 or (want is not None and found > want):
                return False
            short = short or (want is not None and found < want)
        return short or bool(self.absent_splits)

    @property
    def count_mismatches(self) -> dict[str, tuple[int, int]]:
        """split -> (found, expected) where a published count exists and differs."""
        return {
            s: (self.pairs.get(s, 0), n)
            for s, n in self.expected.items()
            if n is not None and self.pairs.get(s, 0) != n
        }

    @property
    def count_problems(self) -> dict[str, tuple[int, int]]:
        """:attr:`count_mismatches` that are problems: all of them, except in a subset."""
        return {} if self.subset else self.count_mismatches

    @property
    def missing_splits(self) -> list[Path]:
        """The pair lists of absent splits, when that is a problem (not in a subset)."""
        return [] if self.subset else list(self.absent_splits.values())

    @property
    def ok(self) -> bool:
        return not (
            self.outside
            or self.not_checked
            or self.layout_missing
            or self.missing_splits
            or self.missing_annotations
            or self.unreadable_annotations
            or self.missing_images
            or self.unreadable_images
            or self.count_problems
        )

    def format(self) -> str:
        """The report as printed by the CLI (one block of lines)."""
        lines = [f"{self.title} at {self.root}"]
        if self.outside:
            lines.append(f"  outside the data set folder ({len(self.outside):,}):")
            lines += [
                f"    {why}" if why.startswith(str(p)) else f"    {p}: {why}"
                for p, why in self.outside[:_SHOW]
            ]
            if len(self.outside) > _SHOW:
                lines.append(f"    ... and {len(self.outside) - _SHOW:,} more")
        if self.not_checked:
            lines += [f"  not checked further: {self.not_checked}", "PROBLEMS: listed above"]
            return "\n".join(lines)
        layout_missing = [*self.layout_missing, *self.missing_splits]
        if layout_missing:
            lines.append(f"  layout       {len(layout_missing)} missing:")
            lines += [f"    {p}" for p in layout_missing[:_SHOW]]
        else:
            lines.append("  layout       ok")
        splits = list(dict.fromkeys([*self.expected, *self.pairs]))
        subset = self.subset
        for i, split in enumerate(splits):
            found, want = self.pairs.get(split, 0), self.expected.get(split)
            if subset and split in self.absent_splits:
                published = "no published count" if want is None else f"published {want:,}"
                head = "  pairs        " if i == 0 else "               "
                lines.append(f"{head}{split} not in this copy ({published})")
                continue
            if subset and want is not None and found < want:
                verdict = f"of {want:,} published"
            elif want is None:
                verdict = "(no published count)"
            elif found == want:
                verdict = f"(published {want:,}) ok"
            else:
                verdict = f"(published {want:,}) MISMATCH: {found - want:+,}"
            head = "  pairs        " if i == 0 else "               "
            lines.append(f"{head}{split} {found:,} {verdict}")
        if self.expected_from:
            lines.append(f"               counts from: {self.expected_from}")
        lines.append(
            f"  annotations  {self.annotations_read:,} read, "
            f"{len(self.missing_annotations):,} missing, "
            f"{len(self.unreadable_annotations):,} unreadable"
        )
        how = "decoded" if self.decoded else "headers only, --quick"
        lines.append(
            f"  images       {self.images_checked:,} checked ({how}), "
            f"{len(self.missing_images):,} missing, {len(self.unreadable_images):,} unreadable"
        )
        for title, items in (
            ("missing annotations", self.missing_annotations),
            ("unreadable annotations", self.unreadable_annotations),
            ("missing images", self.missing_images),
            ("unreadable images", self.unreadable_images),
        ):
            if items:
                lines.append(f"  {title} ({len(items):,}):")
                lines += [f"    {p}: {why}" for p, why in items[:_SHOW]]
                if len(items) > _SHOW:
                    lines.append(f"    ... and {len(items) - _SHOW:,} more")
        if subset:
            lines += [
                "  a subset     of the published release: what it lacks (above) is no problem",
                "               (--split NAME makes a split required)",
            ]
        if self.ok:
            lines.append("OK")
        else:
            n = sum(
                map(
                    bool,
                    (
                        self.outside,
                        layout_missing,
                        self.missing_annotations,
                        self.unreadable_annotations,
                        self.missing_images,
                        self.unreadable_images,
                        self.count_problems,
                    ),
                )
            )
            lines.append(f"PROBLEMS: {n} kind(s), listed above")
        return "\n".join(lines)


def progress_bar(items: Iterable, desc: str, progress: bool | None, total: int | None = None):
    """A tqdm bar over ``items`` (``progress`` None: only on a terminal)."""
    from tqdm import tqdm

    return tqdm(
        items,
        desc=desc,
        total=total,
        disable=None if progress is None else not progress,
        leave=False,
    )


def scan_json(folder: Path, report: CheckReport, progress: bool | None) -> None:
    """Parse every ``*.json`` under ``folder``; malformed ones go to the report."""
    if not folder.is_dir():
        return
    files = sorted(folder.rglob("*.json"))
    for path in progress_bar(files, f"read {folder.name}", progress):
        try:
            json.loads(path.read_text(encoding="utf-8"))
            report.annotations_read += 1
        except (OSError, ValueError) as err:
            report.unreadable_annotations.append((path, f"{type(err).__name__}: {err}"))


def check_record_images(
    records: Sequence[PairRecord], report: CheckReport, quick: bool, progress: bool | None
) -> None:
    """Every image of ``records`` once: missing or undecodable ones (``quick``: header only)
    go to the report with a pair that needs them."""
    paths: dict[Path, str] = {}
    for rec in records:
        for p in (rec.src_image, rec.tgt_image):
            paths.setdefault(Path(p), rec.pair_id)
    report.images_checked = len(paths)
    report.decoded = not quick
    if quick:
        for path, pair in progress_bar(paths.items(), "images", progress, total=len(paths)):
            if not path.is_file():
                report.missing_images.append((path, f"needed by pair {pair}"))
            elif image_size(path) is None:
                report.unreadable_images.append((path, "unreadable header"))
        return
    seen: set[Path] = set()
    for _, path, why in check_images(records, progress=progress):
        if path in seen:
            continue
        seen.add(path)
        if why == "missing":
            report.missing_images.append((path, f"needed by pair {paths[path]}"))
        else:
            report.unreadable_images.append((path, why))


def load_split(
    report: CheckReport,
    load: Callable[[Path, str], list[PairRecord]],
    root: Path,
    split: str,
    source: Path,
) -> list[PairRecord]:
    """The records ``load(root, split)`` reads from the list file ``source``, the outcome
    counted in ``report`` (a name leaving the folder, or an unreadable list, gives none)."""
    try:
        recs = load(root, split)
    except DataPathError as err:
        report.outside.append((err.file, str(err)))
        recs = None
    except (ValueError, OSError) as err:
        report.unreadable_annotations.append((source, str(err)))
        recs = None
    if recs is None:
        report.pairs[split] = 0
        return []
    report.annotations_read += 1
    report.pairs[split] = len(recs)
    return recs


def root_missing(dataset: str, title: str, layout: str, root: Path) -> DatasetLayoutError:
    """The error for a data set folder that does not exist, naming the download command."""
    from .download import download_hint

    return DatasetLayoutError(title, layout, root, hint=download_hint(dataset, root))


# ------------------------------------------------------------------------------------ public

#: the data sets with a check (each in :mod:`corr.datasets.dataset_checks`)
CHECKED = ("spair", "spair-u", "pfpascal", "pfwillow", "tss", "ap10k")


def check_dataset(
    dataset: str,
    root: str | Path,
    *,
    splits: Sequence[str] | None = None,
    quick: bool = False,
    published: Mapping[str, int | None] | None = None,
    progress: bool | None = None,
) -> CheckReport:
    """Check the folder ``root`` of ``dataset`` ("spair", "spair-u", "pfpascal", "pfwillow",
    "tss", "ap10k" (built)).

    ``splits``: the splits to check (default: those with a published count, for AP-10K those of
    the manifest). ``published``: split -> expected pair count replacing the recorded ones.
    Raises DatasetLayoutError (with the download command) when ``root`` does not exist.
    """
    from .download import sources

    if dataset not in CHECKED:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(CHECKED)}")
    entry = sources()[dataset]
    report = CheckReport(dataset=dataset, title=entry["title"], root=Path(root))
    counts = dict(entry.get("published_pairs") or {}) if published is None else dict(published)
    if dataset != "ap10k" or published is not None:
        report.expected = counts
        report.expected_from = (
            "given by the caller"
            if published is not None
            else entry.get("published_pairs_from", "")
        )
        report.expected_is_published = published is None
    if splits is not None:  # the splits asked for by name must be there (SPair: "train" = "trn")
        from .spair import spair_split

        name = spair_split if dataset == "spair" else str
        report.named_splits = [name(s) for s in splits]
    if splits is None:
        splits = list(counts) if dataset != "ap10k" else []
    allowed = []  # (folder of links, folder they may lead to)
    if dataset == "ap10k":  # images of a --link-images build link into the raw release beside it
        allowed.append(
            (Path(root) / "JPEGImages", Path(root).parent / entry["raw_folder"] / "data")
        )
    for link, real in links_leaving(Path(root), allowed):
        why = f"a symbolic link that resolves to {real}, outside {os.path.realpath(root)}"
        if allowed:
            why += f" (an AP-10K build's images may link only into {allowed[0][1]})"
        report.outside.append((link, why))
    if report.outside:
        report.not_checked = (
            "the links above lead outside the folder; replace each by the file it points to "
            "(or remove it), then check again"
        )
        return report
    from .dataset_checks import CHECKS

    CHECKS[dataset](Path(root), report, list(splits), quick, progress)
    if published is not None and dataset == "ap10k":
        report.expected, report.expected_from = dict(published), "given by the caller"
    if splits:
        report.expected = {
            k: v for k, v in report.expected.items() if k in report.pairs or k in splits
        }
    return report
