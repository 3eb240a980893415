"""Four bundled sample photos with their keypoints, shipped with the package (390 KB).

Two different Amur tigers (ATRW, the keypoint-transfer demo's pair: 15 keypoints labelled on
both) and a Thomson's gazelle and a jaguar (AP-10K, a cross-species pair, 17 keypoints). They
serve the demos, the interactive page and the README's examples, from a checkout or from an
installed wheel alike. Keypoints are ``(x, y)`` in 0-based pixels of the bundled files. Terms:
research and testing only (README.md in this folder: provenance and citations).

    >>> import corr
    >>> from corr.samples import sample_path
    >>> out = corr.match(sample_path("tiger_a.jpg"), sample_path("tiger_b.jpg"), [[324, 571]])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

#: the bundled photos, and the pairs the demos offer (source, target)
SAMPLES = ("tiger_a.jpg", "tiger_b.jpg", "gazelle.jpg", "jaguar.jpg")
SAMPLE_PAIRS = (("tiger_a.jpg", "tiger_b.jpg"), ("gazelle.jpg", "jaguar.jpg"))


def sample_path(name: str) -> Path:
    """The file of a bundled sample photo (one of :data:`SAMPLES`)."""
    if name not in SAMPLES:
        raise ValueError(f"no bundled sample {name!r}; the samples are {', '.join(SAMPLES)}")
    path = Path(str(resources.files(__name__) / name))
    if not path.is_file():  # pragma: no cover - a broken install
        raise FileNotFoundError(f"bundled sample {path} is missing: reinstall semcorr")
    return path


@dataclass(frozen=True)
class SampleKeypoints:
    """A sample photo's labelled keypoints: ``names`` and ``points`` ``(K, 2)`` (NaN rows where
    a keypoint is not labelled), and ``box`` ``(x0, y0, x1, y1)`` of the object when the data set
    gives one (``None`` for the tigers: ATRW has no object boxes)."""

    names: tuple[str, ...]
    points: np.ndarray
    box: tuple[float, float, float, float] | None

    def point(self, name: str) -> np.ndarray | None:
        """The ``(x, y)`` of keypoint ``name``, or ``None`` when it is not labelled."""
        p = self.points[self.names.index(name)]
        return None if np.isnan(p).any() else p


@cache
def _annotations() -> dict:
    return json.loads((resources.files(__name__) / "annotations.json").read_text())


def sample_keypoints(name: str) -> SampleKeypoints:
    """The labelled keypoints of a bundled sample photo."""
    sample_path(name)
    entry = _annotations()["images"][name]
    names = tuple(entry["keypoints"])
    points = np.array(
        [[np.nan, np.nan] if p is None else p for p in entry["keypoints"].values()], float
    )
    w, h = entry["size"]
    box = tuple(float(v) for v in entry["bndbox"])
    whole = box[0] <= 0 and box[1] <= 0 and box[2] >= w - 1 and box[3] >= h - 1
    return SampleKeypoints(names, points, None if whole else box)  # type: ignore[arg-type]


def default_points() -> tuple[np.ndarray, list[str]]:
    """The keypoint-transfer demo's default source points: the 15 keypoints of
    ``tiger_a.jpg`` (all labelled on ``tiger_b.jpg`` too) and their names."""
    data = json.loads((resources.files(__name__) / "points.json").read_text())
    return np.asarray(data["points"], dtype=np.float64), [str(n) for n in data["names"]]
