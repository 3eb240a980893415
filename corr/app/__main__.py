"""``python -m corr.app``: serve the interactive demo on this machine (see corr/app/ui.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..logs import setup_cli_logging
from .demo import BACKBONES, DemoApp, bundled_examples


def launch(argv: Sequence[str] | None = None, *, block: bool = True):
    """Parse the command line, build the page and serve it; returns the gradio ``Blocks``
    (with ``block=False`` at once, the server running in a thread: ``.close()`` stops it)."""
    p = argparse.ArgumentParser(
        prog="python -m corr.app",
        description="Interactive semantic correspondence in the browser: click a point on one "
        "image, see its match on the other (needs the [app] extra: gradio).",
    )
    p.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default=None,
        help="initial backbone (default: sd-dino when its weights are here, else mobilenet)",
    )
    p.add_argument(
        "--adapter",
        metavar="NAME|PATH",
        help="a supervised adapter (python -m corr.weights list, or a corr.train output): adds "
        "the backbone 'adapter' (the extractors it was trained on, through it), shown first",
    )
    p.add_argument("--device", default="auto", help="auto (the default), cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port", type=int, default=7860, help="port to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--max-display",
        type=int,
        default=1024,
        help="longest side shown, in pixels (default: %(default)s)",
    )
    args = p.parse_args(argv)
    setup_cli_logging()
    from .ui import build_blocks, theme

    app = DemoApp(
        device=args.device,
        backbone=args.backbone,
        max_display=args.max_display,
        adapter=args.adapter,
    )
    blocks = build_blocks(app)
    allowed = sorted({str(Path(f).parent) for pair in bundled_examples() for f in pair})
    # the command's normal output, not a log record (warnings stay for what went wrong)
    print(f"corr.app: serving on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    blocks.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        inbrowser=False,
        theme=theme(),
        allowed_paths=allowed,
        show_error=True,
        quiet=True,
        footer_links=[],
        prevent_thread_lock=not block,
    )
    return blocks


def main(argv: Sequence[str] | None = None) -> int:
    launch(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
