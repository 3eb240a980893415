"""GeoAware-SC's training switches, with their values and where each comes from.

Reference: Junyi42/GeoAware-SC @99fd6b6. ``pck_train.py``'s argparse defaults, overridden by the
YAML configs (``configs/train_spair.yaml``, ``train_ap10k.yaml``, ``train_pascal.yaml``) and by
``pck_train.py:main`` (which forces ``NUM_PATCHES = 60`` and derives the pair-augmentation
weights from ``PAIR_AUGMENT``). :data:`RECIPES` holds the three published recipes and the
``sd-dino-s`` baseline; :class:`Recipe`'s defaults are the SPair-71k fine-tuning recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "Recipe",
    "RECIPES",
    "TRAINING_RECIPES",
    "get_recipe",
    "training_recipe",
    "ANNO_SIZE",
    "NUM_PATCHES",
    "SPAIR_TRAIN_PAIRS",
]

#: pck_train.py ``--ANNO_SIZE`` 840: the letterbox frame keypoints live in (pixels)
ANNO_SIZE = 840
#: pck_train.py:main ``args.NUM_PATCHES = 60``: the descriptor grid
NUM_PATCHES = 60
#: pck_train.py:main ``steps_per_epoch=53339//args.BZ`` ("53339 is the number of training pairs
#: for SPair-71k"): hard-coded, whatever the training set
SPAIR_TRAIN_PAIRS = 53339


@dataclass(frozen=True)
class Recipe:
    """One training recipe. Field comments give the reference's name and source.

    The pair-augmentation weights are loss *weights*, not probabilities: every step computes
    every enabled term (see :func:`corr.train.pair_loss`).
    """

    name: str = "spair"
    # --- objective (utils/utils_losses.py:calculate_loss) ---
    #: DENSE_OBJ (argparse 1; train_*.yaml 1): add the soft-argmax flow loss to the main term;
    #: the flip terms then use it *instead of* the CLIP loss
    dense_obj: bool = True
    #: SOFT_TRAIN_WINDOW (argparse 0): > 0 zeroes similarities outside a (2w+1)^2 window around
    #: the argmax, < 0 multiplies them by a Gaussian of sigma -w; 0 = plain soft-argmax
    soft_train_window: int = 0
    #: softmax temperature of the training soft-argmax (corr_map_model.py:soft_argmax beta=0.02)
    soft_argmax_beta: float = 0.02
    #: GAUSSIAN_AUGMENT (argparse 0.1): std of the flow-target noise = this * threshold / 2
    #: (dense terms only)
    gaussian_augment: float = 0.1
    #: PAIR_AUGMENT (train_spair/ap10k.yaml true; pascal false) sets AUGMENT_FLIP 1.0,
    #: AUGMENT_DOUBLE_FLIP 1.0, AUGMENT_SELF_FLIP 0.25 (pck_train.py:main). But calculate_loss
    #: weighs the source-flip term by ADAPT_FLIP (an evaluation switch, false in every training
    #: config), never reading AUGMENT_FLIP: the reference trains with this term off.
    flip_weight: float = 0.0
    double_flip_weight: float = 1.0
    self_flip_weight: float = 0.25
    # --- adapter (model_utils/projection_network.py, pck_train.py:main) ---
    #: PROJ_DIM (argparse 768)
    projection_dim: int = 768
    #: FEAT_MAP_DROPOUT (argparse 0.2)
    feat_map_dropout: float = 0.2
    # --- optimisation (pck_train.py:main) ---
    #: LR (argparse 1.25e-3): AdamW lr, and OneCycleLR's max_lr
    lr: float = 1.25e-3
    #: WD (argparse 1e-3): AdamW weight decay
    weight_decay: float = 1e-3
    #: BZ (argparse 1): pairs per optimiser step (their losses summed, then divided by BZ)
    batch_size: int = 1
    #: SCHEDULER (argparse None; train_spair.yaml "one_cycle"): None, "one_cycle" or "cosine"
    scheduler: str | None = "one_cycle"
    #: SCHEDULER_P1 (argparse 0.3): OneCycleLR pct_start
    scheduler_p1: float = 0.3
    #: EPOCH (argparse 1; train_spair.yaml 2, train_ap10k.yaml 1, train_pascal.yaml 100)
    epochs: int = 2
    #: SEED (argparse 42): set_seed before anything (torch, numpy, PYTHONHASHSEED)
    seed: int = 42
    # --- data (pck_train.py, utils/utils_dataset.py) ---
    #: TRAIN_DATASET (argparse "spair"); EVAL_DATASET likewise
    train_dataset: str = "spair"
    eval_dataset: str = "spair"
    #: SAMPLE (argparse 0 = every training pair)
    sample: int = 0
    #: LOAD (train_spair.yaml / train_pascal.yaml: ./results_ap10k/pretrained_ckpt/last.PTH)
    init_from: str | None = "results_ap10k/pretrained_ckpt/last.PTH"
    # --- validation during training (pck_train.py:train, eval) ---
    #: EVAL_EPOCH (argparse 5000): validate every this many pairs and at each epoch's last pair
    eval_every: int = 5000
    #: TEST_SAMPLE (argparse 20; train_spair.yaml 0 = all val pairs; train_ap10k.yaml 20)
    test_sample: int = 0
    #: SOFT_EVAL (train_*.yaml true): window soft-argmax at validation / test
    soft_eval: bool = True
    #: SOFT_EVAL_WINDOW (argparse 7): radius of the evaluation window
    soft_eval_window: int = 7
    #: pairs per epoch of the one-cycle / cosine schedule: ``None`` = the training set's own
    #: (ours); the reference hard-codes 53339 (:data:`SPAIR_TRAIN_PAIRS`) for every data set
    schedule_pairs: int | None = None

    @property
    def pair_augment(self) -> bool:
        """Whether any flip term is on (the reference computes the flipped descriptors then)."""
        return self.flip_weight > 0 or self.double_flip_weight > 0 or self.self_flip_weight > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        return replace(self, **changes)


_SPAIR = Recipe()
_AP10K = Recipe(
    name="ap10k",
    scheduler=None,  # train_ap10k.yaml sets no SCHEDULER: constant lr
    epochs=1,
    train_dataset="ap10k",
    eval_dataset="ap10k",
    init_from=None,
    test_sample=20,  # train_ap10k.yaml TEST_SAMPLE 20
)
_PASCAL = Recipe(
    name="pascal",
    double_flip_weight=0.0,  # train_pascal.yaml has no PAIR_AUGMENT
    self_flip_weight=0.0,
    scheduler=None,
    epochs=100,
    train_dataset="pascal",
    eval_dataset="pascal",
)
#: GeoAware-SC's ablation Baseline row, "SD+DINO (S)": the adapter trained with the sparse
#: CLIP-style loss only (no dense objective, no pair augmentation, no keypoint perturbation,
#: no feature-map dropout, argmax evaluation), here without AP-10K pre-training, on SPair-71k
#: with the otherwise unchanged SPair recipe
_SD_DINO_S = {
    "dense_obj": False,
    "flip_weight": 0.0,
    "double_flip_weight": 0.0,
    "self_flip_weight": 0.0,
    "gaussian_augment": 0.0,
    "feat_map_dropout": 0.0,
    "soft_eval": False,
    "init_from": None,
}
_BASELINE = Recipe(name="sd-dino-s", **_SD_DINO_S)

RECIPES: dict[str, Recipe] = {r.name: r for r in (_SPAIR, _AP10K, _PASCAL, _BASELINE)}


def get_recipe(name: str | Recipe) -> Recipe:
    """The recipe called ``name`` (``spair``, ``ap10k``, ``pascal``, ``sd-dino-s``)."""
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(f"unknown training recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


#: the recipes of ``python -m corr.train --recipe``: what each switches on any data set
TRAINING_RECIPES = ("geoaware", "geoaware-ap10k-pt", "sd-dino-s")
_BASE = {"spair": _SPAIR, "ap10k": _AP10K, "pfpascal": _PASCAL}
#: the AP-10K pre-trained adapter the ``geoaware-ap10k-pt`` recipe starts from (corr.weights)
AP10K_PRETRAINED = "geoaware-ap10k"


def training_recipe(name: str, dataset: str, **overrides: Any) -> Recipe:
    """The recipe ``name`` (:data:`TRAINING_RECIPES`) for ``dataset``, with ``overrides`` (any
    :class:`Recipe` field) put over it.

    - ``geoaware``: GeoAware-SC's recipe for the data set (``train_spair.yaml``,
      ``train_ap10k.yaml``, ``train_pascal.yaml``) from a fresh adapter;
    - ``geoaware-ap10k-pt``: the same, started from the AP-10K pre-trained adapter
      (``init_from="geoaware-ap10k"``: the reference's SPair and PF-Pascal configs);
    - ``sd-dino-s``: the SD+DINO (S) baseline: sparse CLIP loss only, no flip terms, no
      keypoint perturbation, no feature-map dropout, nearest neighbour evaluation, a fresh
      adapter.
    """
    if dataset not in _BASE:
        raise ValueError(f"unknown data set {dataset!r}; training knows {', '.join(_BASE)}")
    base = _BASE[dataset]
    if name == "geoaware":
        recipe = replace(base, init_from=None)
    elif name == "geoaware-ap10k-pt":
        if dataset == "ap10k":
            raise ValueError(
                "--recipe geoaware-ap10k-pt starts from the AP-10K pre-trained adapter; on "
                "ap10k itself that pre-training is --recipe geoaware"
            )
        recipe = replace(base, init_from=AP10K_PRETRAINED)
    elif name == "sd-dino-s":
        recipe = replace(base, **_SD_DINO_S)
    else:
        raise ValueError(
            f"unknown training recipe {name!r}; choose one of {', '.join(TRAINING_RECIPES)}"
        )
    unknown = sorted(set(overrides) - set(Recipe.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown recipe fields {unknown}")
    return replace(recipe, name=f"{name}/{dataset}", **overrides)
