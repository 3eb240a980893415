"""Benchmark data-set loaders (SPair-71k, SPair-U, PF-Pascal, PF-Willow, AP-10K) returning
:class:`PairRecord` lists.

No model code is imported here: only numpy, PIL, json/csv and the standard library.
"""

from __future__ import annotations

from pathlib import Path

from .paths import DataPathError
from .pfpascal import load_pfpascal
from .pfwillow import load_pfwillow
from .records import DatasetLayoutError, PairRecord, check_images
from .spair import load_spair
from .spair_u import load_spair_u

__all__ = [
    "PairRecord",
    "DatasetLayoutError",
    "DataPathError",
    "load_spair",
    "load_pfpascal",
    "load_pfwillow",
    "load_spair_u",
    "load_ap10k",
    "load_pairs",
    "check_images",
    "DATASETS",
]

DATASETS = ("spair", "spair-u", "pfpascal", "pfwillow", "ap10k")


def load_ap10k(
    root: str | Path, subset: str = "intra-species", split: str = "test"
) -> list[PairRecord]:
    """See :func:`corr.datasets.ap10k.load_ap10k` (imported on first use, so that
    ``python -m corr.datasets.ap10k`` does not find its module already imported)."""
    from .ap10k import load_ap10k as _load

    return _load(root, subset=subset, split=split)


def load_pairs(dataset: str, root: str | Path, split: str = "test", **kw) -> list[PairRecord]:
    """Dispatch to the loader of ``dataset`` (one of :data:`DATASETS`).

    Extra keywords go to the loader: ``layout`` for SPair-71k, ``subset`` for AP-10K. A
    DatasetLayoutError also names the command that downloads the data set.
    """
    loaders = {
        "spair": load_spair,
        "spair-u": load_spair_u,
        "pfpascal": load_pfpascal,
        "pfwillow": load_pfwillow,
        "ap10k": load_ap10k,
    }
    if dataset not in loaders:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    try:
        return loaders[dataset](root, split=split, **kw)
    except DatasetLayoutError as err:
        from .download import download_hint

        hint = "\n".join(h for h in (err.hint, download_hint(dataset, root)) if h)
        raise DatasetLayoutError(err.dataset, err.layout, err.missing, hint=hint) from None
