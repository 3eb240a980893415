"""SPair-U loader (Mariotti et al., "Jamais Vu", NeurIPS 2025): SPair-71k's test pairs relabelled
with new semantic points, none of which is among SPair-71k's training keypoints.

SPair-U is a drop-in replacement for SPair-71k's test annotations, in SPair-71k's own format
(:mod:`corr.datasets.spair`), read from ``Extra*`` folders of the SPair-71k folder, the layout
VICO-UoE/JamaisVu@d236e73 reads with ``--UNSEEN_KPS`` (``utils/utils_dataset.py``,
``load_spair_data``: ``ExtraPairAnnotation`` and ``ExtraImageAnnotation`` instead of
``PairAnnotation`` and ``ImageAnnotation``)::

    ROOT/JPEGImages/{cat}/{img}.jpg                       SPair-71k's images
    ROOT/ExtraPairAnnotation/test/{id}-{src}-{trg}:{cat}.json
    ROOT/ExtraImageAnnotation/{cat}/{img}.json            kps "0".. -> [x, y] | null

Every pair file of ``ExtraPairAnnotation/test`` is a pair (JamaisVu globs the folder; SPair's
``Layout`` lists name SPair-71k's pair files, not these). Keypoint k is SPair-U's point id k of
the category (not SPair-71k's id k); records have ``dataset="spair-u"``. Visibility, the pair
file's points and T_ref (max(w, h) of the target's ``bndbox``, as for SPair-71k and as
JamaisVu's evaluation does) follow :func:`corr.datasets.spair.load_spair_pair`. SPair-71k's
twin-group and flip tables describe its own keypoint ids, so they do not apply here.
"""

from __future__ import annotations

from pathlib import Path

from .records import PairRecord
from .spair import SpairVariant, load_spair

__all__ = ["load_spair_u", "SPAIR_U", "SPAIR_U_LAYOUT"]

SPAIR_U_LAYOUT = (
    "  ROOT/JPEGImages/{cat}/{img}.jpg                  (SPair-71k's images)\n"
    "  ROOT/ExtraPairAnnotation/test/{id}-{src}-{trg}:{cat}.json\n"
    "  ROOT/ExtraImageAnnotation/{cat}/{img}.json\n"
    "  with ROOT a SPair-71k folder holding SPair-U's annotations (SPair-U.zip unpacked into it)"
)
SPAIR_U = SpairVariant(
    dataset="spair-u",
    title="SPair-U",
    pairs="ExtraPairAnnotation",
    images="ExtraImageAnnotation",
    layout=SPAIR_U_LAYOUT,
)


def load_spair_u(root: str | Path, split: str = "test") -> list[PairRecord]:
    """Load SPair-U's pairs (split "test", the only one), sorted by ``pair_id``.

    Raises DatasetLayoutError if the layout is wrong, ValueError for a malformed file.
    """
    if split != "test":
        raise ValueError(
            f"SPair-U: unknown split {split!r}; it relabels SPair-71k's test split only"
        )
    return load_spair(root, split=split, layout=None, variant=SPAIR_U)
