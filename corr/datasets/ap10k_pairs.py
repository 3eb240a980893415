"""AP-10K benchmark: the split of each species' images and the three pair draws (protocol §8).

GeoAware-SC's ``prepare_ap10k.ipynb`` (commit in :data:`corr.datasets.ap10k_raw.REFERENCE`),
replayed call for call. The one deliberate difference: every folder listing (families, species,
image annotation files) is taken in sorted name order where the notebook used ``os.listdir``
order, which is not reproducible across file systems.

* Each species' remaining images, listed by file name (``{id:012d}.json``, i.e. by id), give the
  splits: the last min(30, n) are ``test``, the min(20, n - 30) before them ``val``, the rest
  ``trn``.
* A pair needs ``sum_k (v_src / 2) * (v_trg / 2) >= 3`` (the notebook's rule; with the release's
  v in {0, 2} that is 3 mutually visible keypoints).
* Pairs are drawn by three cells, each starting from ``random.seed(42)``; the builder uses a
  private ``random.Random(42)`` per cell making the same calls in the same order:
  - intra-species, splits trn, test, val in turn; per species folder: ``shuffle`` the list, take
    ``itertools.combinations`` of the shuffled list (src = earlier), keep the candidates, then
    ``sample(candidates, min(cap, len))`` when that is > 0, with cap 50 x images for trn and
    every candidate for test and val (so test/val keep all, oriented by the shuffle). trn pairs
    are replayed for the random state only and not written (the toolkit is zero-shot);
  - cross-species, splits val then test; per family with more than one species folder: for each
    species pair (folder order) one ``random()`` per element of the product of their lists (the
    notebook draws it to swap the pair but never uses the swap), then ``sample(candidates,
    min(cap, len))`` with cap 400 (val) / 900 (test); src is from the earlier species;
  - cross-family, splits test then val; per family pair (folder order), the product of the two
    families' lists (species lists concatenated in folder order), then ``sample(candidates,
    min(cap, len))`` with cap 30 (test) / 20 (val); src is from the earlier family.

The pairs of a split land in ``PairAnnotation/{split}{suffix}`` with the suffix of
:data:`AP10K_SUBSETS`; a pair's name is the species (intra-species), the family (cross-species)
or ``all`` (cross-family).
"""

from __future__ import annotations

import random

import numpy as np

from .ap10k_raw import MIN_KEYPOINTS, NUM_KEYPOINTS, RawImage, safe_name

__all__ = [
    "assign_splits",
    "make_pairs",
    "pair_stem",
    "AP10K_SUBSETS",
    "AP10K_SPLITS",
    "CAPS",
    "SEED",
    "N_TEST",
    "N_VAL",
    "TRN_PAIRS_PER_IMAGE",
]

AP10K_SUBSETS = {
    "intra-species": "",
    "cross-species": "_cross_species",
    "cross-family": "_cross_family",
}  #: subset -> suffix of its PairAnnotation folder after the split name
AP10K_SPLITS = ("test", "val")  #: the splits whose pairs are written
SEED = 42
N_TEST, N_VAL = 30, 20
TRN_PAIRS_PER_IMAGE = 50  # the reference's trn cap, 50 x images of the species
# pairs kept per family (cross-species) and per family pair (cross-family), as in the reference
CAPS = {
    "test": {"cross-species": 900, "cross-family": 30},
    "val": {"cross-species": 400, "cross-family": 20},
}


def assign_splits(
    kept: list[RawImage], folders: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, list[RawImage]]]:
    """Per (family, species) folder, its images listed by file name: first trn, then val, test.

    The last min(30, n) images are test, the min(20, n - 30) before them val, the rest trn.
    """
    by_folder: dict[tuple[str, str], list[RawImage]] = {f: [] for f in folders}
    for im in kept:
        by_folder[im.folder].append(im)
    out: dict[tuple[str, str], dict[str, list[RawImage]]] = {}
    for key, ims in by_folder.items():
        ims = sorted(ims, key=lambda im: im.listing_name)
        n = len(ims)
        n_test = min(N_TEST, n)
        n_val = min(N_VAL, max(0, n - n_test))
        n_trn = n - n_test - n_val
        out[key] = {
            "trn": ims[:n_trn],
            "val": ims[n_trn : n_trn + n_val],
            "test": ims[n_trn + n_val :],
        }
    return out


def _mutual_ok(a: list[RawImage], b: list[RawImage]) -> np.ndarray:
    """(len(a), len(b)): the reference's rule, sum over keypoints of (v_a / 2) * (v_b / 2) >= 3.

    With COCO's v in {0, 1, 2} every term is a multiple of 1/4, so the sums are exact.
    """

    def halves(ims: list[RawImage]) -> np.ndarray:
        v = [[float(kp[2]) for kp in im.keypoints] for im in ims]
        return np.asarray(v, dtype=np.float64).reshape(len(ims), NUM_KEYPOINTS) / 2

    return (halves(a) @ halves(b).T) >= MIN_KEYPOINTS


def _product_candidates(a: list[RawImage], b: list[RawImage]) -> list[tuple[RawImage, RawImage]]:
    """``itertools.product(a, b)`` order, kept where the mutual-visibility rule holds."""
    ii, jj = np.nonzero(_mutual_ok(a, b))
    return [(a[i], b[j]) for i, j in zip(ii.tolist(), jj.tolist(), strict=True)]


def _replay_intra(
    rnd: random.Random, images: list[RawImage], cap: int
) -> list[tuple[RawImage, RawImage]]:
    """One species folder of the intra-species cell: shuffle, ordered combinations, sample."""
    ims = list(images)
    rnd.shuffle(ims)
    ii, jj = np.nonzero(np.triu(_mutual_ok(ims, ims), k=1))  # combinations(ims, 2) order
    possible = list(zip(ii.tolist(), jj.tolist(), strict=True))
    k = min(cap, len(possible))
    chosen = rnd.sample(possible, k) if k > 0 else []
    return [(ims[i], ims[j]) for i, j in chosen]


def make_pairs(
    lists: dict[tuple[str, str], dict[str, list[RawImage]]],
) -> tuple[dict[str, list[tuple[RawImage, RawImage, str]]], int]:
    """Replay the reference's three pair cells on the sorted folder listings.

    Returns ({split dir: [(src, trg, name), ...] sorted by file stem} for test and val, the
    number of trn pairs the reference would write). Each cell has its own ``Random(42)``, called
    exactly as the notebook calls the global ``random`` after its ``random.seed(42)``.
    """
    from tqdm import tqdm

    folders = sorted(lists)
    families = sorted({fam for fam, _ in folders})
    species_of = {fam: [sp for f, sp in folders if f == fam] for fam in families}
    out: dict[str, list[tuple[RawImage, RawImage, str]]] = {}

    # intra-species: trn (cap 50 per image), then test and val (no cap: every candidate)
    rnd = random.Random(SEED)
    n_trn = 0
    for split in ("trn", "test", "val"):
        pairs = []
        for fam, sp in folders:
            ims = lists[(fam, sp)][split]
            n = len(ims)
            cap = TRN_PAIRS_PER_IMAGE * n if split == "trn" else n * (n - 1) // 2
            pairs += [(s, t, sp) for s, t in _replay_intra(rnd, ims, cap)]
        if split == "trn":
            n_trn = len(pairs)
        else:
            out[split] = pairs

    # cross-species: val, then test; one draw per product element, whose outcome is unused
    rnd = random.Random(SEED)
    for split in ("val", "test"):
        pairs = []
        for fam in families:
            species = species_of[fam]
            if len(species) < 2:
                continue
            cand: list[tuple[RawImage, RawImage]] = []
            for x in range(len(species)):
                for y in range(x + 1, len(species)):
                    a = lists[(fam, species[x])][split]
                    b = lists[(fam, species[y])][split]
                    for _ in range(len(a) * len(b)):
                        rnd.random()
                    cand += _product_candidates(a, b)
            k = min(CAPS[split]["cross-species"], len(cand))
            pairs += [(s, t, fam) for s, t in rnd.sample(cand, k)]
        out[split + "_cross_species"] = pairs

    # cross-family: test, then val; a family's list is its species' lists in folder order
    rnd = random.Random(SEED)
    for split in ("test", "val"):
        fam_images = {
            fam: [im for sp in species_of[fam] for im in lists[(fam, sp)][split]]
            for fam in families
        }
        fam_pairs = [
            (families[x], families[y])
            for x in range(len(families))
            for y in range(x + 1, len(families))
        ]
        pairs = []
        for f1, f2 in tqdm(fam_pairs, desc=f"{split} cross-family", leave=False, disable=None):
            cand = _product_candidates(fam_images[f1], fam_images[f2])
            k = min(CAPS[split]["cross-family"], len(cand))
            pairs += [(s, t, "all") for s, t in rnd.sample(cand, k)]
        out[split + "_cross_family"] = pairs

    for key in out:
        out[key] = sorted(out[key], key=lambda p: pair_stem(*p))
    return out, n_trn


def pair_stem(src: RawImage, trg: RawImage, name: str) -> str:
    """A pair file's stem: ``{src:012d}-{trg:012d}:{name}`` (name made path-safe)."""
    return f"{src.stem}-{trg.stem}:{safe_name(name)}"
