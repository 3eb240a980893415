"""A small SPair-71k folder cut from minireal, for the download and check tests."""

from __future__ import annotations

import shutil
from pathlib import Path

CATS = ("fly", "locust", "zebra")  # the smallest minireal categories


def copy_spair(minireal: Path, dest: Path) -> list[str]:
    """minireal's SPair-71k pairs of CATS, in the SPair-71k layout; returns the pair stems."""
    src = minireal / "SPair-71k"
    for sub in ("JPEGImages", "ImageAnnotation"):
        for cat in CATS:
            shutil.copytree(src / sub / cat, dest / sub / cat)
    listed = (src / "Layout/large/test.txt").read_text().split()
    stems = [s for s in listed if s.rsplit(":", 1)[1] in CATS]
    (dest / "PairAnnotation/test").mkdir(parents=True)
    for s in stems:
        shutil.copy(src / "PairAnnotation/test" / f"{s}.json", dest / "PairAnnotation/test")
    (dest / "Layout/large").mkdir(parents=True)
    (dest / "Layout/large/test.txt").write_text("\n".join(stems) + "\n")
    return stems
