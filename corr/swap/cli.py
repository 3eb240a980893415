"""``python -m corr.swap SRC TGT --category cat --out DIR``: one instance swap, saved.

Writes into ``DIR`` (each file atomically): ``initial.png`` (the initial swap),
``refined.png`` (the diffusion refinement; not with ``--no-refine``), ``mask.png`` (the target
pixels replaced, white), ``mask_src.png`` / ``mask_tgt.png`` (the instance masks used) and
``swap.json`` (the inputs, the files written and the config that made them). All images
have the target's size. Exit status: 0 done, 1 a file could not be written, 2 bad input
(a missing file or weights, a bad mask).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import WriteError, atomic_write_bytes, atomic_write_json

#: the default backbone: the SD+DINO features of the paper
DEFAULT_EXTRACTORS = "sd-dino"
#: the small stand-in, named as such in figures
STANDIN = "corr.contrib.mobilenet:mobilenetv2"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corr.swap",
        description="Put the instance of SRC in place of the instance of TGT (TGT's pose and "
        "background), as in the SD+DINO paper: an initial swap through the dense "
        "correspondence, then a diffusion refinement with Stable Diffusion's weights.",
    )
    p.add_argument("src", help="the image whose instance is taken")
    p.add_argument("tgt", help="the image whose instance is replaced (the output's frame)")
    p.add_argument("--category", help="the instances' category, e.g. cat (the prompt)")
    p.add_argument("--out", required=True, help="folder for the PNGs and swap.json")
    p.add_argument(
        "--mask-src",
        metavar="PNG|x0,y0,x1,y1",
        help="the source instance: a mask image of SRC's size (nonzero = instance) or a box in "
        "original pixels (default: found by co-segmentation)",
    )
    p.add_argument("--mask-tgt", metavar="PNG|x0,y0,x1,y1", help="the target instance, as above")
    p.add_argument(
        "--extractors",
        default=DEFAULT_EXTRACTORS,
        help="a Matcher preset (sd-dino, dino, sd, ...) or comma-separated extractor specs, "
        "e.g. corr.contrib.mobilenet:mobilenetv2 (the small stand-in) (default: %(default)s)",
    )
    p.add_argument("--no-refine", action="store_true", help="the initial swap only (any backbone)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--sd-model", default="sd15", help="SD weights of the refinement (sd15)")
    p.add_argument("--sd-path", help="a local diffusers folder with those weights")
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="share of the DDIM timesteps inverted and sampled (default: %(default)s)",
    )
    p.add_argument(
        "--inversion-iterations",
        type=int,
        default=0,
        help="fixed-point refinements per inversion step (0: plain DDIM, the paper's)",
    )
    p.add_argument(
        "--n-parts", type=int, default=2, help="co-segmentation parts (default: %(default)s)"
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        help="target pixels matched less similarly (cosine) keep the target's pixel",
    )
    p.add_argument(
        "--figure",
        metavar="PATH",
        help="also write a figure (PNG/JPG): source, target, initial and refined swap, with a "
        "caption naming the features and the refinement's settings",
    )
    p.add_argument("--device", default="auto", help="auto (the default), cpu, cuda, cuda:1, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_mask(value: str | None, what: str):
    """``--mask-*``: ``None``, a box ``x0,y0,x1,y1`` (a 4-tuple of floats) or a mask image
    (an ``(H, W)`` uint8 array of the file's first channel)."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) == 4 and not Path(value).exists():
        try:
            return tuple(float(v) for v in parts)
        except ValueError:
            pass
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {value}: no such file, and not a box x0,y0,x1,y1")
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def png_bytes(array: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` uint8 image or an ``(H, W)`` bool mask -> PNG bytes."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def run(args: argparse.Namespace) -> Path:
    """Make the swap ``args`` ask for and write it; returns the JSON's path."""
    from ..matcher import PRESETS, Matcher
    from .api import swap

    for name in (args.src, args.tgt):
        if not Path(name).is_file():
            raise FileNotFoundError(f"{name}: no such image file")
    specs = args.extractors
    if specs not in PRESETS:
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    mask_src = parse_mask(args.mask_src, "--mask-src")
    mask_tgt = parse_mask(args.mask_tgt, "--mask-tgt")
    if not args.no_refine and not args.category:
        raise ValueError("the refinement needs --category (its prompt), or pass --no-refine")
    refiner = None
    if not args.no_refine:  # missing SD weights are refused before anything is loaded
        from ..devices import resolve_device
        from .refine import Refiner

        refiner = Refiner.from_weights(
            args.sd_model,
            path=args.sd_path,
            device=resolve_device(args.device),
            strength=args.strength,
            inversion_iterations=args.inversion_iterations,
        )
    matcher = Matcher(specs, device=args.device)
    out = swap(
        args.src,
        args.tgt,
        args.category,
        mask_src=mask_src,
        mask_tgt=mask_tgt,
        refine=not args.no_refine,
        steps=args.steps,
        matcher=matcher,
        refiner=refiner,
        seed=args.seed,
        n_parts=args.n_parts,
        min_confidence=args.min_confidence,
        progress=not args.no_progress,
    )
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    images = {"initial": out.initial, "refined": out.refined, "mask": out.mask}
    images.update(mask_src=out.mask_src, mask_tgt=out.mask_tgt)
    files = {}
    for key, array in images.items():
        if array is not None:
            atomic_write_bytes(folder / f"{key}.png", png_bytes(array))
            files[key] = f"{key}.png"
    record = {
        "src": str(Path(args.src).resolve()),
        "tgt": str(Path(args.tgt).resolve()),
        "size": {"width": int(out.initial.shape[1]), "height": int(out.initial.shape[0])},
        # pixels of the target replaced by the swap, and their share of the target instance
        "replaced_pixels": int(out.mask.sum()),
        "replaced_share_of_mask_tgt": round(float(out.mask.sum() / out.mask_tgt.sum()), 6),
        "files": files,
        "arguments": dict(vars(args)),
        "config": out.config,
    }
    if args.figure:
        from ..io import load_image
        from ..viz import save_figure
        from .figure import plot_swap

        refined = (
            f"refined with {args.sd_model}, {args.steps} DDIM steps, strength {args.strength}"
            if out.refined is not None
            else "no refinement (--no-refine)"
        )
        features = args.extractors
        if features == STANDIN:
            features += " (the small ImageNet stand-in, not SD+DINO)"
        caption = (
            f"corr.swap: features {features}; masks from {out.masks_from}; {refined}; "
            f"seed {args.seed}"
        )
        fig = plot_swap(load_image(args.src), load_image(args.tgt), out, caption=caption)
        record["figure"] = str(save_figure(fig, args.figure, dpi=110).resolve())
    path = folder / "swap.json"
    atomic_write_json(path, record)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """The exit status: 0 done, 1 a file could not be written, 2 bad input."""
    from ..logs import setup_cli_logging

    args = build_parser().parse_args(argv)
    setup_cli_logging()
    try:
        path = run(args)
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, ImportError) as err:  # WeightsNotFoundError too
        print(f"error: {err}", file=sys.stderr)
        return 2
    # the command's normal output, not a log record
    print(f"corr.swap: written to {path.parent}: images and {path.name}", flush=True)
    return 0
