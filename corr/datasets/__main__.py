"""``python -m corr.datasets {download,check}``: get the benchmarks and validate them.

Examples::

    python -m corr.datasets download spair pfpascal ap10k --root data/
    python -m corr.datasets download spair-u --root data/ --from data/.downloads/SPair-71k.tar.gz
    python -m corr.datasets download pfwillow tss --root data/
    python -m corr.datasets download ap10k --root data/ --from ~/Downloads/ap-10k.zip
    python -m corr.datasets download spair --root data/ --from https://mirror.example/SPair-71k.tar.gz
    python -m corr.datasets check spair --root data/SPair-71k
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..logs import INTERRUPTED
from .records import DatasetLayoutError

NAMES = ("spair", "spair-u", "pfpascal", "pfwillow", "tss", "ap10k")


def _sums(values: Sequence[str], first_file: dict[str, str]) -> dict[str, str]:
    """``--sha256 [NAME=]HEX`` values -> {file name: hex}; a bare HEX is the main archive's."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, digest = value.rpartition("=")
        if not sep:
            if len(first_file) != 1:
                raise ValueError(
                    f"--sha256 {value}: with several data sets, write NAME=HEX (the file's name)"
                )
            name = next(iter(first_file.values()))
        out[name] = digest
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corr.datasets",
        description="Download, verify and prepare SPair-71k, SPair-U, PF-Pascal, PF-Willow, TSS "
        "and AP-10K; check a copy.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "download",
        help="fetch, verify (SHA-256) and unpack data sets into ROOT (AP-10K: also build it)",
        description="Fetch the published archives (resuming partial downloads), verify their "
        "SHA-256, unpack them atomically into ROOT/SPair-71k, ROOT/SPair-U (SPair-71k with SPair-U's "
        "annotations), ROOT/PF-Pascal, ROOT/PF-WILLOW, ROOT/TSS_CVPR2016 or ROOT/AP-10K (AP-10K: the raw release into ROOT/ap-10k, then the benchmark builder). A complete "
        "folder is left as it is.",
    )
    d.add_argument("datasets", nargs="+", choices=NAMES, metavar="{" + ",".join(NAMES) + "}")
    d.add_argument("--root", default="data", help="parent folder (default: data)")
    d.add_argument(
        "--from",
        dest="origins",
        action="append",
        default=[],
        metavar="FILE_OR_URL",
        help="an archive you already have, a folder holding the files, a mirror URL of the "
        "archive, or a mirror base URL ending in / (repeatable: one per file)",
    )
    d.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="[NAME=]HEX",
        help="expected SHA-256 of a file (bare HEX: the main archive), overriding the recorded one",
    )
    d.add_argument("--retries", type=int, default=3, help="retries of a dropped connection")
    d.add_argument(
        "--timeout", type=float, default=60.0, help="seconds without data before a retry"
    )
    d.add_argument(
        "--keep-archives",
        action="store_true",
        help="keep the downloaded archives in ROOT/.downloads",
    )
    d.add_argument(
        "--link-images",
        action="store_true",
        help="AP-10K: symlink the benchmark's images to the raw release instead of copying them",
    )
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    c = sub.add_parser(
        "check",
        help="validate a data set folder: layout, annotations, images, pair counts, files outside",
        description="Report missing images, unreadable annotations and the pair count per split "
        "against the published counts, and every name in a data file or symbolic link that leads "
        "outside the folder (nothing is read through such a link). A subset of a published data "
        "set (some of its splits, fewer pairs, e.g. tests/data/minireal) is said to be one: the "
        "splits and pairs it lacks are information. Exit status 0: all good, 1: problems found.",
    )
    c.add_argument("dataset", choices=NAMES)
    c.add_argument("--root", required=True, help="the data set folder, e.g. data/SPair-71k")
    c.add_argument(
        "--split",
        action="append",
        dest="splits",
        help="check only this split, which must then be there (repeatable; AP-10K: a "
        "PairAnnotation folder name)",
    )
    c.add_argument(
        "--quick", action="store_true", help="images: check existence and header only, no decoding"
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure or problems found, 2 bad input)."""
    from ..logs import setup_cli_logging

    setup_cli_logging()
    args = build_parser().parse_args(argv)
    progress = False if args.no_progress else None
    if args.command == "check":
        from .check import check_dataset

        try:
            report = check_dataset(
                args.dataset, args.root, splits=args.splits, quick=args.quick, progress=progress
            )
        except (DatasetLayoutError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(report.format())
        return 0 if report.ok else 1

    from .download import DownloadError, download, sources

    if args.origins and len(args.datasets) > 1:
        print("error: --from needs a single data set (one download command each)", file=sys.stderr)
        return 2
    if args.retries < 0 or args.timeout <= 0:
        print("error: --retries must be >= 0 and --timeout > 0", file=sys.stderr)
        return 2
    table = sources()
    try:
        sums = _sums(args.sha256, {n: table[n]["files"][0]["name"] for n in args.datasets})
        for name in args.datasets:
            download(
                name,
                args.root,
                origins=args.origins,
                sums=sums,
                retries=args.retries,
                timeout=args.timeout,
                progress=progress,
                keep_archives=args.keep_archives,
                link_images=args.link_images,
            )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: partial downloads are kept in {args.root}/.downloads; run the same "
            "command to resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    from ..logs import exit_cli

    exit_cli(main())
