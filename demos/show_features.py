#!/usr/bin/env python
"""Feature view: the fused descriptors' first three principal components as RGB, and a query's
similarity map.

Usage::

    python demos/show_features.py IMG [IMG ...] [--query x,y] [--out F.png] [--extractor ...]
    python demos/show_features.py                      # the two bundled sample photos
    python demos/show_features.py corr/samples/gazelle.jpg corr/samples/jaguar.jpg \\
        --query 291,312 --extractor corr.contrib.mobilenet:mobilenetv2

One row per image: the photo, its fused features as RGB, and (with ``--query x,y``, a point on
the FIRST image in its original pixels) the cosine similarity of the query's descriptor to
every cell of that image, with the best match (the matcher's prediction) marked by a star.

How the colours are made
    The descriptors come from :meth:`corr.Matcher.descriptors`, which fits the co-PCA of the
    SD layers on a *pair* of images (docs/protocol.md §4). With two images that is the pair itself.
    With more, each image ``k`` is fused together with the first image (pair ``(0, k)``); the
    first image's descriptors are those of pair ``(0, 1)``. Caveat: the SD half of image ``k``
    then lives in the co-PCA basis of its own pair, so for three or more images the colours of
    images 2.. are comparable to the others through the DINO half exactly and through the SD
    half only approximately. With a single image it is fused with itself.

    ONE PCA is then fitted jointly on the descriptors of all images (as in the SD+DINO paper's
    figures), on the cells that touch image content (letterbox padding cells are left out of
    the fit and the display), and each of the three components is min-max scaled jointly over
    all images, so equal colours mean similar features across images. The map is sampled back
    onto each original image (padding cropped away, resized to the image).

Writes a PNG (default ``demos/out/features.png``) and prints its path. Exit codes as in
``keypoint_transfer.py``: 0 done, 1 the model could not be built, 2 bad arguments or files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGES = ("gazelle.jpg", "jaguar.jpg")  # bundled samples (corr.samples)
DEFAULT_OUT = HERE / "out" / "features.png"
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python demos/show_features.py",
        description="Fused features as RGB (joint PCA) and a query point's similarity maps.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMG",
        help="images (default: the bundled sample photos gazelle.jpg and jaguar.jpg)",
    )
    p.add_argument(
        "--query", help="x,y on the first image, original pixels: show its similarity maps"
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output PNG")
    p.add_argument(
        "--extractor",
        nargs="+",
        default=["sd-dino"],
        metavar="NAME",
        help="preset (sd-dino, sd, dino, tiny), registered names, or module:factory",
    )
    p.add_argument(
        "--fuse", type=float, default=0.5, help="alpha: weight of the SD group (two extractors)"
    )
    p.add_argument(
        "--matcher", choices=("softargmax", "nn"), default="softargmax", help="for the best match"
    )
    p.add_argument("--dtype", default=None, help="model dtype for SD/DINOv2 (fp32, bf16, fp16)")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, ..."
    )
    p.add_argument("--no-pretrained", action="store_true", help="random weights (tests only)")
    return p


def _error(parser: argparse.ArgumentParser, message: str, code: int = 2) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from corr.logs import setup_cli_logging

    setup_cli_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from corr.io import load_image
    from corr.points import PointsError, parse_points
    from corr.samples import sample_path

    paths = [Path(p) for p in args.images] or [sample_path(n) for n in DEFAULT_IMAGES]
    images = []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path, name=f"IMG {i + 1} {path}"))
        except (FileNotFoundError, ValueError) as err:
            return _error(parser, str(err))
    query = None
    if args.query is not None:
        try:
            q = parse_points(args.query, "--query")
        except PointsError as err:
            return _error(parser, str(err))
        if len(q) != 1:
            return _error(parser, f"--query: give one point x,y, got {len(q)}")
        h, w = images[0].shape[:2]
        if not (0 <= q[0, 0] <= w - 1 and 0 <= q[0, 1] <= h - 1):
            return _error(
                parser, f"--query {args.query} lies outside the first image {paths[0]} ({w}x{h})"
            )
        query = (float(q[0, 0]), float(q[0, 1]))
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        return _error(parser, f"--out {out}: use a .png, .jpg, .pdf or .svg file name")

    import corr
    from corr.geometry import content_mask, grid_to_image
    from corr.viz import joint_pca_rgb, plot_feature_views, save_figure
    from corr.weights import WeightsNotFoundError

    try:
        matcher = corr.Matcher(
            args.extractor[0] if len(args.extractor) == 1 else list(args.extractor),
            fuse=args.fuse,
            method=args.matcher,
            pretrained=not args.no_pretrained,
            dtype=args.dtype,
            device=args.device,
            memory_cache=4 * len(images) + 4,
        )
    except WeightsNotFoundError as err:
        print(
            f"error: the model weights for --extractor {' '.join(args.extractor)} are missing.\n{err}",
            file=sys.stderr,
        )
        print(
            f"\nWithout them, try --extractor {MOBILENET} (installed by `bash .ci/setup`).",
            file=sys.stderr,
        )
        return 1
    except (KeyError, ValueError) as err:
        return _error(parser, f"--extractor {' '.join(args.extractor)}: {err}")
    except ImportError as err:
        print(f"error: cannot build --extractor {' '.join(args.extractor)}: {err}", file=sys.stderr)
        return 1

    # image k against image 0, as a pair (its own co-PCA); image 0's descriptors from pair (0, 1)
    if len(images) == 1:
        pairs = []
        only = matcher.pair(images[0], images[0])
        descs, frames = [only.descriptors[0]], [only.frames[0]]
    else:
        pairs = [matcher.pair(images[0], im) for im in images[1:]]
        descs = [pairs[0].descriptors[0]] + [p.descriptors[1] for p in pairs]
        frames = [pairs[0].frames[0]] + [p.frames[1] for p in pairs]
    g = descs[0].shape[-1]
    masks = [content_mask(lb, g) for lb in frames]
    rgb_grids = joint_pca_rgb(descs, masks)
    rgb_images = [grid_to_image(rgb, lb) for rgb, lb in zip(rgb_grids, frames, strict=True)]

    similarity = best = None
    if query is not None:
        similarity = [None] * len(images)
        best = [None] * len(images)
        for k, pair in enumerate(pairs, start=1):
            similarity[k] = pair.similarity(query)
            res = pair.match([query])
            best[k] = tuple(float(v) for v in res["keypoints1"][0])
            print(
                f"query ({query[0]:.1f}, {query[1]:.1f}) on {paths[0].name} -> best match "
                f"({best[k][0]:.1f}, {best[k][1]:.1f}) on {paths[k].name}, "
                f"cosine {float(res['confidence'][0]):.3f}"
            )
    title = (
        f"extractor: {' '.join(args.extractor)}{' (random weights)' if args.no_pretrained else ''}"
        f"   |   joint PCA of the fused descriptors over {len(images)} image(s)"
    )
    fig = plot_feature_views(
        images,
        rgb_images,
        titles=[p.name for p in paths],
        query=query,
        similarity=similarity,
        best=best,
        suptitle=title,
    )
    save_figure(fig, out)
    print(f"figure: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
