"""Training core for supervised adapters (GeoAware-SC's recipe): losses, pair augmentation,
optimiser and schedule, and the recipes' switches. The training loop is built on these.

- :mod:`corr.train.recipe`: :class:`Recipe` (every switch, its value and source), ``RECIPES``;
- :mod:`corr.train.losses`: :func:`clip_loss`, :class:`SoftArgmaxFlow`, :func:`pair_loss`;
- :mod:`corr.train.augment`: flips of keypoints and the flip terms, Gaussian flow noise;
- :mod:`corr.train.schedule`: AdamW and the one-cycle schedule;
- :mod:`corr.train.data`, :mod:`corr.train.loop`, :mod:`corr.train.validation`,
  :mod:`corr.train.state`: the training run (:func:`train`, ``python -m corr.train``): pairs
  from the feature cache, the steps, validation, resumable state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

#: public name -> the module holding it, imported on first use, so that ``python -m corr.train``
#: reaches its own code (which turns Ctrl-C into "interrupted, resume with ...") before torch
_EXPORTS = {
    **dict.fromkeys(
        ("flip_keypoints", "flip_permutation_for", "flip_views", "flow_noise", "threshold_cells"),
        "corr.train.augment",
    ),
    **dict.fromkeys(("TrainOptions", "train"), "corr.train.loop"),
    **dict.fromkeys(
        ("SoftArgmaxFlow", "clip_loss", "flow_loss", "keypoint_positions", "pair_loss"),
        "corr.train.losses",
    ),
    **dict.fromkeys(
        ("RECIPES", "TRAINING_RECIPES", "Recipe", "get_recipe", "training_recipe"),
        "corr.train.recipe",
    ),
    **dict.fromkeys(
        (
            "build_optimizer",
            "build_scheduler",
            "one_cycle_lr",
            "one_cycle_momentum",
            "scheduler_total_steps",
        ),
        "corr.train.schedule",
    ),
}

if TYPE_CHECKING:  # pragma: no cover
    from .augment import (
        flip_keypoints,
        flip_permutation_for,
        flip_views,
        flow_noise,
        threshold_cells,
    )
    from .loop import TrainOptions, train
    from .losses import SoftArgmaxFlow, clip_loss, flow_loss, keypoint_positions, pair_loss
    from .recipe import RECIPES, TRAINING_RECIPES, Recipe, get_recipe, training_recipe
    from .schedule import (
        build_optimizer,
        build_scheduler,
        one_cycle_lr,
        one_cycle_momentum,
        scheduler_total_steps,
    )

__all__ = [
    "RECIPES",
    "TRAINING_RECIPES",
    "Recipe",
    "TrainOptions",
    "SoftArgmaxFlow",
    "build_optimizer",
    "build_scheduler",
    "clip_loss",
    "flip_keypoints",
    "flip_permutation_for",
    "flip_views",
    "flow_loss",
    "flow_noise",
    "get_recipe",
    "keypoint_positions",
    "one_cycle_lr",
    "one_cycle_momentum",
    "pair_loss",
    "scheduler_total_steps",
    "threshold_cells",
    "train",
    "training_recipe",
]


__getattr__ = lazy_getattr("corr.train", _EXPORTS, globals())
