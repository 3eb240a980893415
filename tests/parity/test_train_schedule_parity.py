"""GeoAware-SC's optimiser and schedules (golden/train_schedule.json): the one-cycle learning
rate and AdamW beta1 of the SPair recipe at fixed steps, and the cosine option."""

from __future__ import annotations

import warnings

import pytest
import torch

from corr.train import (
    Recipe,
    build_optimizer,
    build_scheduler,
    one_cycle_lr,
    one_cycle_momentum,
    scheduler_total_steps,
)
from corr.train.schedule import COSINE_ETA_MIN


def test_one_cycle_closed_form_matches_the_reference(golden):
    oc = golden("train_schedule.json")["one_cycle"]
    total = scheduler_total_steps(Recipe())
    assert total == oc["total_steps"]
    for step, want in oc["steps"].items():
        s = int(step)
        lr = one_cycle_lr(s, total, oc["max_lr"], oc["pct_start"])
        assert lr == pytest.approx(want["lr"], rel=1e-9, abs=1e-15), step
        assert one_cycle_momentum(s, total, oc["pct_start"]) == pytest.approx(
            want["beta1"], rel=1e-9
        ), step


def test_built_scheduler_starts_and_steps_as_the_reference(golden):
    oc = golden("train_schedule.json")["one_cycle"]
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], Recipe())
    sched = build_scheduler(opt, Recipe())
    assert sched.total_steps == oc["total_steps"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() without optimizer.step()
        for step in range(3):
            group = opt.param_groups[0]
            want = oc["steps"][str(step)]
            assert group["lr"] == pytest.approx(want["lr"], rel=1e-12), step
            assert group["betas"][0] == pytest.approx(want["beta1"], rel=1e-12), step
            assert group["weight_decay"] == 1e-3
            sched.step()


def test_cosine_option_matches_the_reference(golden):
    cos = golden("train_schedule.json")["cosine"]
    recipe = Recipe(scheduler="cosine")
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], recipe)
    sched = build_scheduler(opt, recipe)
    assert sched.T_max == cos["T_max"] and sched.eta_min == cos["eta_min"] == COSINE_ETA_MIN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(3):
            want = cos["steps"][str(step)]["lr"]
            assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12), step
            sched.step()
    # the later steps through torch's closed form of the same scheduler (no 53k steps here)
    for step, want in cos["steps"].items():
        sched.last_epoch = int(step)
        assert sched._get_closed_form_lr()[0] == pytest.approx(want["lr"], rel=1e-9), step


@pytest.mark.parametrize("wrong", [{"pct_start": 0.25}, {"max_lr": 1e-3}, {"div_factor": 10.0}])
def test_wrong_one_cycles_fail_the_golden(golden, wrong):
    """Another warm-up share, peak or starting divisor misses OneCycleLR's learning rates."""
    oc = golden("train_schedule.json")["one_cycle"]
    args = {"max_lr": oc["max_lr"], "pct_start": oc["pct_start"], **wrong}
    misses = [
        step
        for step, want in oc["steps"].items()
        if abs(one_cycle_lr(int(step), oc["total_steps"], **args) - want["lr"]) > 1e-9 * want["lr"]
    ]
    assert len(misses) >= len(oc["steps"]) // 2, (wrong, misses)
