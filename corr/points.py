"""Points given by a user: ``"x,y;x,y"`` text and points files (JSON, CSV, TXT).

Points are ``(x, y)`` in original image pixels. Errors are :class:`PointsError` (a
``ValueError``) naming the argument or file, the point or line, and the expected form.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np


class PointsError(ValueError):
    """Points text or a points file that cannot be read; the message says where and why."""


def parse_points(text: str, what: str = "--points") -> np.ndarray:
    """``"x,y;x,y"`` -> ``(N, 2)`` float64 array; :class:`PointsError` naming ``what``."""
    pts = []
    items = [s.strip() for s in text.strip().strip(";").split(";")]
    if not items or items == [""]:
        raise PointsError(f'{what}: no points given; expected "x,y;x,y", e.g. "120,80;200,150"')
    for i, item in enumerate(items):
        parts = [p.strip() for p in item.split(",")]
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise PointsError(
                f'{what}: point {i + 1} ({item!r}) is not "x,y"; expected "x,y;x,y" in source '
                'pixels, e.g. "120,80;200,150"'
            ) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise PointsError(f"{what}: point {i + 1} ({item!r}) is not finite")
        pts.append((x, y))
    return np.asarray(pts, dtype=np.float64)


def _as_points(data, what: str) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise PointsError(f"{what}: points must be a list of [x, y] pairs of numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise PointsError(
            f"{what}: points must be a non-empty list of [x, y] pairs, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise PointsError(f"{what}: points must be finite numbers")
    return arr


def read_points_file(
    path: str | Path, what: str | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Read a points file: JSON (``[[x, y], ...]`` or ``{"points": ..., "names": ...}``) or
    CSV/TXT (``x,y`` or ``x y`` per line; ``#`` comments and a non-numeric header line allowed).
    Returns ``(points (N, 2), names or None)``."""
    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise PointsError(f"{what}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PointsError(f"{what}: invalid JSON ({err})") from None
        names = None
        if isinstance(data, dict):
            if "points" not in data:
                raise PointsError(f'{what}: a JSON object needs a "points" list of [x, y]')
            names = data.get("names")
            data = data["points"]
        pts = _as_points(data, what)
        if names is not None:
            if not isinstance(names, list) or len(names) != len(pts):
                raise PointsError(f'{what}: "names" must list one name per point ({len(pts)})')
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
            raise PointsError(f"{what}: line {lineno} ({','.join(cells)!r}) is not 'x,y'") from None
    return _as_points(rows, what), None


def points_outside(points: np.ndarray, width: int, height: int) -> int | None:
    """Index of the first point outside the pixels of a ``width x height`` image, or ``None``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    bad = (pts[:, 0] < 0) | (pts[:, 0] > width - 1) | (pts[:, 1] < 0) | (pts[:, 1] > height - 1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None
