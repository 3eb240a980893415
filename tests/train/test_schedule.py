"""Optimiser, schedules and recipes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR

from corr.train import (
    RECIPES,
    Recipe,
    build_optimizer,
    build_scheduler,
    get_recipe,
    one_cycle_lr,
    one_cycle_momentum,
    scheduler_total_steps,
    training_recipe,
)


def test_closed_form_equals_torch_one_cycle_at_every_step():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW(p, lr=1e-3)
    sched = OneCycleLR(opt, max_lr=1e-3, steps_per_epoch=37, epochs=2, pct_start=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(74 + 1):
            g = opt.param_groups[0]
            assert one_cycle_lr(step, 74, 1e-3, 0.3) == pytest.approx(g["lr"], rel=1e-12, abs=1e-18)
            assert one_cycle_momentum(step, 74, 0.3) == pytest.approx(g["betas"][0], rel=1e-12)
            if step < 74:
                sched.step()
    with pytest.raises(ValueError, match="outside 0..74"):
        one_cycle_lr(75, 74, 1e-3, 0.3)


def test_optimizer_and_scheduler_follow_the_recipe():
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(params, Recipe(lr=2e-3, weight_decay=0.5))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == 2e-3 and opt.param_groups[0]["weight_decay"] == 0.5
    assert build_scheduler(opt, RECIPES["ap10k"]) is None
    assert scheduler_total_steps(Recipe(batch_size=4, epochs=3)) == (53339 // 4) * 3
    with pytest.raises(ValueError, match="unknown scheduler 'plateau'"):
        build_scheduler(opt, Recipe(scheduler="plateau"))


def test_recipes():
    spair = get_recipe("spair")
    assert spair is RECIPES["spair"] and spair == Recipe()
    assert (spair.flip_weight, spair.double_flip_weight, spair.self_flip_weight) == (0.0, 1.0, 0.25)
    assert spair.dense_obj and spair.pair_augment and spair.epochs == 2
    assert not RECIPES["pascal"].pair_augment and RECIPES["pascal"].epochs == 100
    base = RECIPES["sd-dino-s"]
    assert not base.dense_obj and not base.pair_augment and not base.soft_eval
    # SD+DINO (S) is the sparse loss alone: no perturbation, no feature-map dropout either
    assert base.gaussian_augment == 0.0 and base.feat_map_dropout == 0.0
    for dataset in ("spair", "ap10k", "pfpascal"):
        r = training_recipe("sd-dino-s", dataset)
        assert (r.gaussian_augment, r.feat_map_dropout, r.dense_obj) == (0.0, 0.0, False)
        assert not r.pair_augment and not r.soft_eval and r.init_from is None
    assert training_recipe("geoaware", "spair").feat_map_dropout == 0.2  # the reference's
    assert RECIPES["ap10k"].scheduler is None and RECIPES["ap10k"].init_from is None
    assert get_recipe(base) is base
    with pytest.raises(ValueError, match="unknown training recipe 'x'"):
        get_recipe("x")
    assert spair.replace(epochs=1).epochs == 1 and spair.as_dict()["lr"] == 1.25e-3
