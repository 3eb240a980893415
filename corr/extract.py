"""``python -m corr.extract --images LIST_OR_FOLDER --out FOLDER``: features of any images.

Extracts the features of every image of a folder (recursively: .jpg, .jpeg, .png, .bmp,
.webp) or of a text file listing image paths (one per line), with the same extractors and
options as ``python -m corr.eval``, into the feature-cache format that :class:`corr.FeatureStore`
reads back (layout in its docstring). Re-running resumes: images already extracted are skipped
without being decoded. Under ``torchrun --nproc_per_node=N`` each process takes a shard of the
images; every process writes only its own files.

Examples::

    python -m corr.extract --images photos/ --out features/ --batch-size 8 --num-workers 4
    torchrun --nproc_per_node=8 -m corr.extract --images list.txt --out /shared/features
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .logs import INTERRUPTED

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def build_parser() -> argparse.ArgumentParser:
    from .eval.cli import PROTOCOL_NAMES
    from .eval.extractor_args import HelpFormatter, add_extractor_arguments

    p = argparse.ArgumentParser(
        prog="python -m corr.extract",
        description="Extract features of a folder or list of images into a feature store.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--images", required=True, help="a folder (searched recursively) or a text file of paths"
    )
    p.add_argument(
        "--out", required=True, help="the feature folder (read it with corr.FeatureStore)"
    )
    p.add_argument(
        "--protocol",
        default="corr",
        choices=PROTOCOL_NAMES,
        help="extractor settings of a protocol",
    )
    p.add_argument("--flip", action="store_true", help="also extract the mirrored images")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader decoding processes")
    p.add_argument(
        "--skip-bad", action="store_true", help="list unreadable images instead of stopping"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--adapter",
        metavar="NAME|PATH",
        help="extract the features this supervised adapter was trained on (its extractors); "
        "the adapter itself runs at matching time",
    )
    add_extractor_arguments(p)
    return p


def list_images(source: str | Path) -> list[Path]:
    """The images of a folder (recursive, sorted) or of a list file (in its order)."""
    src = Path(source)
    if src.is_dir():
        return sorted(
            p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    if src.is_file():
        lines = [ln.strip() for ln in src.read_text().splitlines()]
        return [
            (src.parent / ln) if not Path(ln).is_absolute() else Path(ln)
            for ln in lines
            if ln and not ln.startswith("#")
        ]
    raise FileNotFoundError(f"--images {source}: no such folder or list file")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corr.extract``: the exit status (0 done, 1 a file could not be written, 2 bad
    input, 130 interrupted: Ctrl-C at any moment, the same command resumes)."""
    out = None
    try:
        args = build_parser().parse_args(argv)
        out = args.out
        return _main(args)
    except KeyboardInterrupt:
        where = f"the features extracted so far are in {out}; " if out else ""
        print(f"\ninterrupted: {where}run the same command to resume", file=sys.stderr)
        return INTERRUPTED


def _main(args: argparse.Namespace) -> int:
    from .logs import import_torch

    import_torch()  # Ctrl-C while torch loads: held until it can be an orderly interrupt
    from .io import WriteError
    from .logs import setup_cli_logging
    from .preflight import PreflightError

    setup_cli_logging()
    try:
        if args.batch_size < 1 or args.num_workers < 0:
            raise ValueError("--batch-size must be >= 1 and --num-workers >= 0")
        from .eval.extractor_args import default_extractors, extractor_options, extractor_specs
        from .preflight import preflight
        from .protocols import get_protocol

        protocol = get_protocol(args.protocol)
        specs = extractor_specs(args, default_extractors(args, protocol))

        def data() -> list[Path]:
            found = list_images(args.images)
            if not found:
                raise ValueError(
                    f"--images {args.images}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            return found

        # the images, extractors, weights and packages: every problem at once, nothing loaded
        images = preflight(
            specs,
            options=extractor_options(args, specs),
            protocol=protocol,
            pretrained=not args.no_pretrained,
            dtype=None if args.dtype == "auto" else args.dtype,  # auto: the Matcher resolves it
            data=data,
            adapter=args.adapter,
        )
        from .distributed import context, shard
        from .extraction import ImageItem
        from .io import atomic_write_text
        from .matcher import Matcher

        ctx = context()
        matcher = Matcher(
            specs,
            protocol=protocol.name,
            pretrained=not args.no_pretrained,
            extractor_options=extractor_options(args, specs),
            dtype=args.dtype,
            autocast=args.autocast,
            device=ctx.device(args.device),
            cache_dir=args.out,
            memory_cache=0,
            compile=args.compile,
        )
        items = [ImageItem(str(p.resolve())) for p in images]
        if args.flip:
            items += [ImageItem(str(p.resolve()), mirrored=True) for p in images]
        if ctx.active:  # configuration files: one process writes them
            if ctx.is_main:
                for ext in matcher.extractors:
                    matcher.cache.write_config(matcher.cache_config(ext, None))
            matcher.cache.write_configs = False
            ctx.barrier()
        mine = shard(items, ctx)
        report = matcher.extract(
            mine,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            skip_bad=args.skip_bad,
            progress=not args.no_progress and ctx.is_main,
        )
        lines = []
        for item in mine:
            found = matcher.cache.lookup_path(item.image, item.mirrored)
            if found is not None:
                key, w, h = found
                lines.append(
                    json.dumps(
                        {
                            "image": item.image,
                            "mirrored": item.mirrored,
                            "key": key,
                            "width": w,
                            "height": h,
                        }
                    )
                )
        name = f"manifest.{ctx.rank}.jsonl" if ctx.active else "manifest.jsonl"
        atomic_write_text(Path(args.out) / name, "".join(ln + "\n" for ln in lines))
        r = report.as_dict()
        print(
            f"rank {ctx.rank}/{ctx.world}: " if ctx.active else "",
            f"{r['n_images']} images: {r['cached']} already there, {r['computed']} extracted in "
            f"{r['seconds']} s ({r['images_per_second'] or '-'} images/s), {len(r['bad'])} unreadable"
            f" -> {args.out}",
            sep="",
            file=sys.stderr,
        )
        ctx.barrier()
        ctx.close()
        return 0
    except WriteError as err:  # disk full, read-only folder: what was written stays
        print(f"error: {err}; then run the same command to resume", file=sys.stderr)
        return 1
    except (PreflightError, FileNotFoundError, ValueError, KeyError, ImportError) as err:
        print(
            f"error: {err.args[0] if isinstance(err, KeyError) and err.args else err}",
            file=sys.stderr,
        )
        return 2


def run() -> None:
    """The ``corr-extract`` command: :func:`main`, then :func:`corr.logs.exit_cli`."""
    from .logs import exit_cli

    exit_cli(main())


if __name__ == "__main__":
    run()
