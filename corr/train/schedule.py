"""GeoAware-SC's optimiser and learning-rate schedule.

Reference: Junyi42/GeoAware-SC @99fd6b6, ``pck_train.py:main``::

    optimizer = torch.optim.AdamW(params, lr=args.LR, weight_decay=args.WD)
    OneCycleLR(optimizer, max_lr=args.LR, steps_per_epoch=53339 // args.BZ,
               epochs=args.EPOCH, pct_start=args.SCHEDULER_P1)          # SCHEDULER one_cycle
    CosineAnnealingLR(optimizer, T_max=53339 // args.BZ, eta_min=1e-6)   # SCHEDULER cosine

``params`` are the adapter's parameters chained with the dense head's (its ``x_normal`` /
``y_normal``). ``scheduler.step()`` is called once per optimiser step (per ``BZ`` pairs), after
``optimizer.step()``. The step count is hard-coded to SPair-71k's 53339 training pairs whatever
the data set. OneCycleLR's other arguments are torch's defaults: cosine annealing,
``div_factor`` 25 (start at ``max_lr / 25``), ``final_div_factor`` 1e4 (end at
``max_lr / 25 / 1e4``), two phases, and ``cycle_momentum`` on: AdamW's ``beta1`` runs
0.95 -> 0.85 -> 0.95 against the learning rate. :func:`one_cycle_lr` and
:func:`one_cycle_momentum` give the same values in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR

from .recipe import SPAIR_TRAIN_PAIRS, Recipe

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "scheduler_total_steps",
    "one_cycle_lr",
    "one_cycle_momentum",
    "ONE_CYCLE_DIV_FACTOR",
    "ONE_CYCLE_FINAL_DIV_FACTOR",
    "ONE_CYCLE_BASE_MOMENTUM",
    "ONE_CYCLE_MAX_MOMENTUM",
    "COSINE_ETA_MIN",
]

#: torch OneCycleLR defaults, which pck_train.py leaves unset
ONE_CYCLE_DIV_FACTOR = 25.0
ONE_CYCLE_FINAL_DIV_FACTOR = 1e4
ONE_CYCLE_BASE_MOMENTUM = 0.85
ONE_CYCLE_MAX_MOMENTUM = 0.95
#: pck_train.py:main ``CosineAnnealingLR(..., eta_min=1e-6)``
COSINE_ETA_MIN = 1e-6


def build_optimizer(
    params: Iterable[torch.nn.Parameter], recipe: Recipe | None = None
) -> torch.optim.AdamW:
    """``AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)`` (other args torch's)."""
    recipe = recipe if recipe is not None else Recipe()
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def scheduler_total_steps(recipe: Recipe | None = None) -> int:
    """OneCycleLR's ``total_steps``: ``(53339 // batch_size) * epochs``. Stepping past it
    raises in torch, so a loop over more pairs than 53339 per epoch (all 53340 SPair-71k
    ``trn`` pairs, or another data set) must stop the schedule there."""
    recipe = recipe if recipe is not None else Recipe()
    return (SPAIR_TRAIN_PAIRS // recipe.batch_size) * recipe.epochs


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    recipe: Recipe | None = None,
    pairs_per_epoch: int | None = None,
) -> LRScheduler | None:
    """The recipe's scheduler on ``optimizer``, built as the reference does (module docstring);
    ``None`` when ``recipe.scheduler`` is None (constant learning rate). ``pairs_per_epoch``
    replaces the reference's hard-coded 53339 (the training loop passes the training set's
    size, or ``recipe.schedule_pairs``)."""
    recipe = recipe if recipe is not None else Recipe()
    pairs = SPAIR_TRAIN_PAIRS if pairs_per_epoch is None else int(pairs_per_epoch)
    steps = max(1, pairs // recipe.batch_size)
    if recipe.scheduler is None:
        return None
    if recipe.scheduler == "one_cycle":
        return OneCycleLR(
            optimizer,
            max_lr=recipe.lr,
            steps_per_epoch=steps,
            epochs=recipe.epochs,
            pct_start=recipe.scheduler_p1,
        )
    if recipe.scheduler == "cosine":
        return CosineAnnealingLR(optimizer, T_max=steps, eta_min=COSINE_ETA_MIN)
    raise ValueError(
        f"unknown scheduler {recipe.scheduler!r} in recipe {recipe.name!r}; "
        "use None, 'one_cycle' or 'cosine'"
    )


def _phase(step: int, total_steps: int, pct_start: float) -> tuple[float, float, int]:
    """(fraction into the phase, 1 for the warm-up phase / 2 for the anneal) of ``step``."""
    if not 0 <= step <= total_steps:
        raise ValueError(f"step {step} outside 0..{total_steps}")
    end_up = float(pct_start * total_steps) - 1
    end_down = float(total_steps - 1)
    if step <= end_up:
        return step / end_up, 0.0, 1
    return (step - end_up) / (end_down - end_up), end_up, 2


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle_lr(
    step: int,
    total_steps: int,
    max_lr: float,
    pct_start: float,
    div_factor: float = ONE_CYCLE_DIV_FACTOR,
    final_div_factor: float = ONE_CYCLE_FINAL_DIV_FACTOR,
) -> float:
    """OneCycleLR's learning rate after ``step`` scheduler steps (two phases, cosine)."""
    initial = max_lr / div_factor
    final = initial / final_div_factor
    pct, _, phase = _phase(step, total_steps, pct_start)
    return _cos(initial, max_lr, pct) if phase == 1 else _cos(max_lr, final, pct)


def one_cycle_momentum(
    step: int,
    total_steps: int,
    pct_start: float,
    base_momentum: float = ONE_CYCLE_BASE_MOMENTUM,
    max_momentum: float = ONE_CYCLE_MAX_MOMENTUM,
) -> float:
    """OneCycleLR's momentum (AdamW ``beta1``) after ``step`` scheduler steps."""
    pct, _, phase = _phase(step, total_steps, pct_start)
    if phase == 1:
        return _cos(max_momentum, base_momentum, pct)
    return _cos(base_momentum, max_momentum, pct)
