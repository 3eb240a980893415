#!/usr/bin/env python
"""Keypoint transfer demo: move points from a source photo onto a target photo.

Usage::

    python demos/keypoint_transfer.py                       # bundled tigers, SD+DINO
    python demos/keypoint_transfer.py SRC TGT --points "120,80;200,150" --out fig.png
    python demos/keypoint_transfer.py SRC TGT --points-file pts.json
    python demos/keypoint_transfer.py --extractor corr.contrib.mobilenet:mobilenetv2
    python demos/keypoint_transfer.py SRC TGT --warp warped.png   # + the source warped onto TGT
    bash demos/run.sh                                       # set up from nothing, then run

Writes a side-by-side figure (source left, target right, coloured numbered points, a line
joining each pair) and, next to it, ``<figure stem>.json`` with the image paths and sizes, the
points in **original image pixels**, the confidence of each match and the extractor config.

Points
    ``--points "x,y;x,y"`` or ``--points-file F`` (JSON ``[[x, y], ...]`` or
    ``{"points": [[x, y], ...], "names": [...]}``; CSV/TXT with one ``x,y`` per line, ``#``
    comments and a non-numeric header line allowed; :mod:`corr.points`), ``(x, y)`` in source
    pixels. Without SRC and TGT the bundled samples (:mod:`corr.samples`) are used: two
    different Amur tigers from ATRW and the 15 labelled keypoints of the first; the figure then
    also draws each keypoint's label on the second tiger, the error of each prediction and the
    pair's PCK@0.10. ATRW gives no object box, so the PCK threshold is 0.1 x the longer side of
    the tight box around the target's labelled keypoints (the figure says so). With SRC and TGT
    but no points, ``--num-points`` points are chosen automatically
    (:meth:`corr.Pair.suggest_points`: mutual nearest neighbours among each image's most
    distinctive cells, spread over the object; a heuristic).

Warp
    ``--warp PATH`` (``.png`` or ``.jpg``) also writes the source warped into the target's frame
    through the dense correspondence (:meth:`corr.Pair.warp`; needs OpenCV:
    ``pip install "semcorr[warp]"``): an image of the target's size in which target pixel
    ``(x, y)`` shows the source pixel matched to it. Pixels without a valid match (outside the
    source, or below ``--warp-min-confidence``) are greyed out: the target's own pixels, in
    faded grey. Flick between it and the target to judge the correspondence everywhere.

Extractors
    The default is the SD+DINO preset (``sd-dino``), which needs the real Stable Diffusion 1.5
    and DINOv2 weights (``python -m corr.weights list``). When they are missing the demo stops
    with the loader's message naming every place it looked. ``demos/run.sh`` runs the demo with
    the ImageNet MobileNetV2 (``corr.contrib.mobilenet:mobilenetv2``), which is always there
    after ``bash .ci/setup``. ``--no-pretrained`` builds random weights (for tests only: the
    matches are then meaningless).

Images
    Pixels are used as stored (EXIF orientation ignored, as in the benchmarks);
    ``--exif-transpose`` applies it, so that coordinates are in the frame a viewer shows. Images
    above 100 megapixels or thinner than 1:100 are refused with exit code 2 (see
    ``corr.io.MAX_IMAGE_PIXELS``).

Exit codes: 0 done, 1 the model could not be built (e.g. missing weights), 2 bad arguments or
input files (nothing is written).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out" / "keypoint_transfer.png"
DEFAULT_PAIR = ("tiger_a.jpg", "tiger_b.jpg")
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"
BACKBONES = {  # what a figure says about the features that made it
    MOBILENET: "ImageNet MobileNetV2 (a small stand-in that runs anywhere; NOT the SD+DINO "
    "features, which need the real weights: python -m corr.weights list)",
    "sd-dino": "SD+DINO: Stable Diffusion 1.5 UNet decoder layers 2/5/8 + DINOv2-B/14, co-PCA, "
    "fused with alpha",
    "sd": "Stable Diffusion 1.5 UNet decoder layers 2/5/8",
    "dino": "DINOv2-B/14 tokens",
}
COORD_NOTE = (
    "All coordinates are (x, y) in ORIGINAL image pixels, 0-based, x to the right and y down: "
    "'src' points on the source image file, 'tgt' points on the target image file (not the "
    "figure, not the letterboxed model input)."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python demos/keypoint_transfer.py",
        description=(
            "Transfer keypoints from a source to a target image with corr.Matcher and draw them. "
            "Without SRC/TGT: the bundled sample tigers and their labelled keypoints."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("src", nargs="?", metavar="SRC", help="source image (default: sample tiger_a)")
    p.add_argument("tgt", nargs="?", metavar="TGT", help="target image (default: sample tiger_b)")
    pts = p.add_mutually_exclusive_group()
    pts.add_argument("--points", help='source points "x,y;x,y" in original source pixels')
    pts.add_argument(
        "--points-file",
        help='JSON [[x,y],...] (or {"points": ..., "names": ...}) or CSV/TXT with x,y per line',
    )
    p.add_argument(
        "--num-points", type=int, default=24, help="points chosen automatically when none are given"
    )
    p.add_argument(
        "--out", default=str(DEFAULT_OUT), help="figure path; the JSON is written next to it"
    )
    p.add_argument(
        "--extractor",
        nargs="+",
        default=None,
        metavar="NAME",
        help="preset (sd-dino, sd, dino, tiny), registered names, or module:factory such as "
        f"{MOBILENET} (default: sd-dino; with --adapter, the extractors it was trained on)",
    )
    p.add_argument(
        "--fuse", type=float, default=0.5, help="alpha: weight of the SD group (two extractors)"
    )
    p.add_argument(
        "--matcher",
        choices=("softargmax", "nn"),
        default=None,
        help="matching (default: softargmax; with --adapter, the adapter's evaluation)",
    )
    p.add_argument(
        "--adapter",
        metavar="NAME|PATH",
        help="a supervised adapter (python -m corr.weights list, or a corr.train output such as "
        "runs/x/best.safetensors); the extractors default to those it was trained on",
    )
    p.add_argument("--dtype", default=None, help="model dtype for SD/DINOv2 (fp32, bf16, fp16)")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, ..."
    )
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="random weights (tests only: the matches are meaningless)",
    )
    p.add_argument(
        "--exif-transpose",
        action="store_true",
        help="apply the photos' EXIF orientation (phone photos): points and results are then in "
        "the frame a viewer shows, not in the stored pixels",
    )
    p.add_argument(
        "--warp",
        metavar="PATH",
        help="also save the source warped into the target's frame (.png/.jpg, the target's "
        'size; invalid pixels greyed out; needs pip install "semcorr[warp]")',
    )
    p.add_argument(
        "--warp-min-confidence",
        type=float,
        default=None,
        metavar="C",
        help="with --warp: grey out the pixels whose match has a confidence below C",
    )
    return p


def labelled_targets(names: list[str] | None, bundled: bool):
    """The target's labels of the named points and the PCK box, for the bundled tigers: the
    data set's object box, or (ATRW has none) the tight box of the target's labelled keypoints.
    Returns ``(targets (N, 2) NaN where unlabelled, box side in px, how the box was made)``."""
    from corr.samples import sample_keypoints

    if names is None or not bundled:
        return None
    labels = sample_keypoints(DEFAULT_PAIR[1])
    gt = np.array([labels.point(n) if n in labels.names else [np.nan] * 2 for n in names], float)
    gt = np.where(np.isfinite(gt), gt, np.nan)
    if labels.box is not None:
        x0, y0, x1, y1 = labels.box
        return gt, max(x1 - x0, y1 - y0), "the target's object box"
    known = labels.points[np.isfinite(labels.points).all(1)]
    side = float(max(np.ptp(known[:, 0]), np.ptp(known[:, 1])))
    return gt, side, "the tight box of the target's labelled keypoints (ATRW has no object box)"


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
    except SystemExit as exc:  # argparse errors (2) and --help (0)
        return int(exc.code or 0)

    from corr.io import WriteError, load_image
    from corr.points import PointsError, parse_points, points_outside, read_points_file
    from corr.samples import default_points, sample_path

    # ---- inputs (validated before any model is built; nothing is written on error)
    if (args.src is None) != (args.tgt is None):
        return _error(parser, "give both SRC and TGT, or neither (then the bundled samples)")
    bundled = args.src is None
    src_path = Path(args.src) if args.src else sample_path(DEFAULT_PAIR[0])
    tgt_path = Path(args.tgt) if args.tgt else sample_path(DEFAULT_PAIR[1])
    images = {}
    for label, path in (("SRC", src_path), ("TGT", tgt_path)):
        try:
            images[label] = load_image(
                path, name=f"{label} {path}", exif_transpose=args.exif_transpose
            )
        except (FileNotFoundError, ValueError) as err:
            return _error(parser, str(err))
    src, tgt = images["SRC"], images["TGT"]
    names: list[str] | None = None
    try:
        if args.points is not None:
            points, how = parse_points(args.points), "--points"
        elif args.points_file is not None:
            what = f"--points-file {args.points_file}"
            points, names = read_points_file(args.points_file, what)
            how = what
        elif bundled:
            points, names = default_points()
            how = "the bundled sample's 15 labelled ATRW keypoints (corr.samples)"
        else:
            points, how = None, "automatic"
    except PointsError as err:
        return _error(parser, str(err))
    if points is not None:
        i = points_outside(points, src.shape[1], src.shape[0])
        if i is not None:
            arg = "--points-file" if args.points_file else "--points" if args.points else "points"
            return _error(
                parser,
                f"{arg}: point {i + 1} {points[i].tolist()} lies outside the source image "
                f"{src_path} ({src.shape[1]}x{src.shape[0]}); points are (x, y) in original "
                "source pixels",
            )
    if args.num_points < 1:
        return _error(parser, "--num-points must be at least 1")
    if not 0.0 <= args.fuse <= 1.0:
        return _error(parser, f"--fuse must lie in [0, 1], got {args.fuse}")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        return _error(parser, f"--out {out}: use a .png, .jpg, .pdf or .svg file name")
    warp_path = Path(args.warp) if args.warp else None
    if warp_path is not None:
        if warp_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            return _error(parser, f"--warp {warp_path}: use a .png or .jpg file name")
        if warp_path.resolve() in (out.resolve(), out.with_suffix(".json").resolve()):
            return _error(parser, f"--warp {warp_path}: give a file other than the figure/JSON")
        try:
            import cv2  # noqa: F401
        except ImportError:
            print('error: --warp needs OpenCV: pip install "semcorr[warp]"', file=sys.stderr)
            return 1
    elif args.warp_min_confidence is not None:
        return _error(parser, "--warp-min-confidence needs --warp PATH")

    # ---- the matcher and the pair
    import corr
    from corr.weights import WeightsNotFoundError

    extractor = args.extractor or ["sd-dino"]
    spec = extractor[0] if len(extractor) == 1 else list(extractor)
    what = (
        f"--extractor {' '.join(extractor)}"
        if args.extractor or not args.adapter
        else f"the extractors of --adapter {args.adapter}"
    )
    try:
        matcher = corr.Matcher(
            None if args.adapter and not args.extractor else spec,
            fuse=None if args.adapter else args.fuse,
            method=args.matcher,
            pretrained=not args.no_pretrained,
            dtype=args.dtype,
            device=args.device,
            adapter=args.adapter,
        )
    except WeightsNotFoundError as err:
        print(
            f"error: the model weights for {what} are missing.\n{err}",
            file=sys.stderr,
        )
        print(
            "\nTo try the demo without them, use the ImageNet MobileNetV2 that `bash .ci/setup` "
            f"installs:\n  python demos/keypoint_transfer.py --extractor {MOBILENET}\n"
            "or run `bash demos/run.sh`.",
            file=sys.stderr,
        )
        return 1
    except (KeyError, ValueError) as err:
        return _error(parser, f"{what}: {err}")
    except ImportError as err:
        print(f"error: cannot build {what}: {err}", file=sys.stderr)
        return 1
    args.extractor, args.matcher = args.extractor or list(matcher.specs), matcher.method
    pair = matcher.pair(src, tgt)
    mutual = None
    if points is None:
        points, mutual = pair.suggest_points(args.num_points)
        how = (
            f"automatic: {len(points)} source cells among the most distinctive quarter of each "
            "image, mutual nearest neighbours with the target first (Pair.suggest_points)"
        )
    result = pair.match(points)
    try:
        report = write_outputs(args, pair, result, src_path, tgt_path, names, how, mutual, bundled)
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_table(report)
    return 0


def write_outputs(args, pair, result, src_path, tgt_path, names, how, mutual, bundled) -> dict:
    """The figure, the optional warp and the JSON report (all written atomically)."""
    from PIL import Image

    from corr.io import atomic_write_bytes, atomic_write_json
    from corr.viz import plot_correspondences, readable_by_others, save_figure, warp_picture

    src, tgt = (np.asarray(Image.open(p).convert("RGB")) for p in (src_path, tgt_path))
    if args.exif_transpose:
        from corr.io import load_image

        src, tgt = (load_image(p, exif_transpose=True) for p in (src_path, tgt_path))
    kp0, kp1, conf = result.keypoints0, result.keypoints1, result.confidence
    out = Path(args.out)
    spec_text = " ".join(args.extractor)
    backbone = BACKBONES.get(spec_text, spec_text)
    if args.adapter:
        backbone += f", through the trained adapter {args.adapter}"
    if args.no_pretrained:
        backbone += " with RANDOM weights (a test run: these matches mean nothing)"
    caption = [f"features: {backbone}"]
    labelled = labelled_targets(names, bundled)
    gt = thr = pck = None
    if labelled is not None:
        gt, side, box_how = labelled
        thr = 0.1 * side
        known = np.isfinite(gt).all(1) & np.isfinite(kp1).all(1)
        hits = int((np.linalg.norm(kp1[known] - gt[known], axis=1) < thr).sum())
        pck = {"correct": hits, "labelled": int(known.sum()), "threshold_px": thr, "box": box_how}
        caption.append(
            f"PCK@0.10 of this pair: {hits} of {int(known.sum())} keypoints within {thr:.0f} px "
            f"= 0.1 x the longer side of {box_how}"
        )
    labels = [str(i) for i in range(len(kp0))]
    fig = plot_correspondences(
        src,
        tgt,
        kp0,
        kp1,
        labels=labels,
        confidence=conf,
        title=f"{src_path.name} -> {tgt_path.name}   |   {args.matcher}",
        legend=[f"{i} {n}" for i, n in zip(labels, names, strict=True)] if names else labels,
        ground_truth=gt,
        threshold=thr,
        caption=caption,
    )
    save_figure(fig, out)
    records = []
    for i in range(len(kp0)):
        rec = {
            "index": i,
            "name": names[i] if names else None,
            "src": [round(float(v), 2) for v in kp0[i]],
            "tgt": [round(float(v), 2) for v in kp1[i]],
            "confidence": round(float(conf[i]), 4),
        }
        if mutual is not None:
            rec["mutual_nn"] = bool(mutual[i])
        if gt is not None and np.isfinite(gt[i]).all():
            rec["tgt_annotated"] = gt[i].tolist()
            rec["error_px"] = round(float(np.linalg.norm(kp1[i] - gt[i])), 2)
        records.append(rec)
    m = pair.matcher
    report = {
        "note": COORD_NOTE,
        "src": {"path": str(src_path), "width": int(src.shape[1]), "height": int(src.shape[0])},
        "tgt": {"path": str(tgt_path), "width": int(tgt.shape[1]), "height": int(tgt.shape[0])},
        "points_from": how,
        "exif_transpose": args.exif_transpose,
        "points": records,
        "extractor": {
            "spec": list(args.extractor),
            "features": backbone,
            "pretrained": not args.no_pretrained,
            "fuse": None if args.adapter else args.fuse,
            "adapter": m.config().get("adapter"),
            "matcher": args.matcher,
            "device": str(m.device),
            "config": m.config(),
        },
        "figure": str(out),
    }
    if pck is not None:
        report["pck@0.10"] = pck
        report["note_annotated"] = (
            "tgt_annotated: the data set's label of the same keypoint on the target (bundled "
            "samples only); error_px: distance to it in target pixels; pck@0.10: keypoints with "
            "error_px < threshold_px = 0.1 x the longer side of the box named in 'box', per "
            "keypoint of this one pair."
        )
    if args.warp:
        warp = pair.warp(min_confidence=args.warp_min_confidence)
        warp_path = Path(args.warp)
        buf = io.BytesIO()
        fmt = "PNG" if warp_path.suffix.lower() == ".png" else "JPEG"
        Image.fromarray(warp_picture(warp.warped, warp.valid, tgt)).save(
            buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})
        )
        atomic_write_bytes(warp_path, buf.getvalue())
        report["warp"] = {
            "path": str(warp_path),
            "note": "the source warped into the target's frame (target size); greyed-out "
            "pixels: no valid match",
            "valid_fraction": round(float(warp.valid.mean()), 4),
            "min_confidence": args.warp_min_confidence,
        }
    json_path = out.with_suffix(".json")
    atomic_write_json(json_path, report)
    readable_by_others(json_path)
    return report


def print_table(report: dict) -> None:
    print(f"{len(report['points'])} points, {report['points_from']}")
    print(f"{'#':>3} {'name':<16} {'source (x, y)':>18}   {'target (x, y)':>18}  conf")
    for rec in report["points"]:
        (sx, sy), (tx, ty) = rec["src"], rec["tgt"]
        print(
            f"{rec['index']:>3} {rec['name'] or '':<16} {sx:>8.1f} {sy:>8.1f}   -> "
            f"{tx:>8.1f} {ty:>8.1f}  {rec['confidence']:.3f}"
        )
    print(f"features: {report['extractor']['features']}")
    pck = report.get("pck@0.10")
    if pck is not None:
        print(
            f"PCK@0.10 of this pair (per keypoint): {pck['correct']} of {pck['labelled']} "
            f"within {pck['threshold_px']:.1f} px of the label (0.1 x {pck['box']})"
        )
    print(f"figure: {report['figure']}")
    print(f"json:   {Path(report['figure']).with_suffix('.json')}")
    if "warp" in report:
        print(f"warp:   {report['warp']['path']}")


if __name__ == "__main__":
    sys.exit(main())
