"""GeoAware-SC's training losses (golden/train_losses.json): sparse CLIP loss, the dense
soft-argmax flow loss with its trainable coordinate grid, and calculate_loss's composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corr.keypoint_tables import load_groups
from corr.train import (
    Recipe,
    SoftArgmaxFlow,
    clip_loss,
    flip_permutation_for,
    flow_loss,
    keypoint_positions,
    pair_loss,
)


def descs(seed: int, smooth: bool, grid: int, dim: int) -> torch.Tensor:
    """The golden's descriptors: randn (seeded generator), 'smooth' 1 + 0.2 r, rows / (norm + 1e-10)."""
    d = torch.randn((grid * grid, dim), generator=torch.Generator().manual_seed(seed))
    if smooth:
        d = 1 + 0.2 * d
    return d / (torch.linalg.norm(d, dim=-1, keepdim=True) + 1e-10)


def family(data: dict, name: str) -> dict[str, torch.Tensor]:
    smooth = name == "smooth"
    return {k: descs(s, smooth, data["grid"], data["dim"]) for k, s in data["desc_seeds"].items()}


def keypoints(data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    def pad(k):
        t = torch.tensor(k, dtype=torch.float32)
        return F.pad(t, (0, 0, 0, data["pad_rows"] - t.shape[0]), value=0)

    return pad(data["kps1"]), pad(data["kps2"])


def main_term(data: dict):
    k1, k2 = keypoints(data)
    vis = (k1[:, 2] * k2[:, 2]).bool()
    p1, i1 = keypoint_positions(k1[vis], data["size"], data["grid"])
    p2, _ = keypoint_positions(k2[vis], data["size"], data["grid"])
    return i1, p2 - p1


@pytest.fixture
def data(golden):
    return golden("train_losses.json")


def test_clip_loss_matches_cal_clip_loss(data):
    c = data["clip"]
    f = []
    for s in c["seeds"]:
        x = torch.randn((c["n"], data["dim"]), generator=torch.Generator().manual_seed(s))
        f.append(x / x.norm(dim=-1, keepdim=True))
    got = clip_loss(f[0], f[1], torch.tensor(data["logit_scale"]).exp())
    assert got.item() == pytest.approx(c["loss"], rel=1e-6, abs=1e-6)


def test_keypoint_cells_and_flow_target_match_get_patch_idx(data):
    cells, target = main_term(data)
    assert cells.tolist() == data["src_cells"]
    torch.testing.assert_close(target, torch.tensor(data["gt_flow"]), atol=0, rtol=0)


@pytest.mark.parametrize("fam", ["random", "smooth"])
@pytest.mark.parametrize("window", [0, 3, -5])
def test_dense_flow_loss_and_grid_gradients(data, fam, window):
    want = data["dense"][fam][str(window)]
    d = family(data, fam)
    cells, target = main_term(data)
    head = SoftArgmaxFlow(grid=data["grid"], window=window)
    pred = head(d["src"], d["tgt"], cells)
    loss = flow_loss(pred, target)
    loss.backward()
    torch.testing.assert_close(pred.detach(), torch.tensor(want["flow_pred"]), atol=2e-5, rtol=1e-5)
    assert loss.item() == pytest.approx(want["loss"], rel=2e-6)
    for name in ("x_normal", "y_normal"):
        grad = getattr(head, name).grad
        torch.testing.assert_close(grad, torch.tensor(want[f"{name}_grad"]), atol=2e-5, rtol=1e-4)


def test_the_coordinate_grid_is_trainable_as_in_the_reference(data):
    params = dict(SoftArgmaxFlow(grid=data["grid"]).named_parameters())
    ref = data["corr_map_net_parameters"]
    assert sorted(params) == sorted(ref)
    for name, spec in ref.items():
        assert list(params[name].shape) == spec["shape"]
        assert params[name].requires_grad == spec["requires_grad"]


def recipe_for(case: dict) -> Recipe:
    on = case["pair_augment"]
    return Recipe(
        dense_obj=case["dense_obj"],
        soft_train_window=case["soft_train_window"],
        gaussian_augment=case["gaussian_augment"],
        # calculate_loss weighs the source-flip term by ADAPT_FLIP, not AUGMENT_FLIP
        flip_weight=1.0 if (on and case["adapt_flip"]) else 0.0,
        double_flip_weight=1.0 if on else 0.0,
        self_flip_weight=0.25 if on else 0.0,
    )


def case_loss(data: dict, case: dict, recipe: Recipe) -> float:
    """``pair_loss`` of one golden case under ``recipe`` (its seeded noise drawn as there)."""
    perm = flip_permutation_for(load_groups("spair_flip")[data["flip_category"]])
    k1, k2 = keypoints(data)
    d = family(data, case["descriptors"])
    flow = SoftArgmaxFlow(grid=data["grid"], window=recipe.soft_train_window)
    if case["noise_seed"] is not None:
        torch.manual_seed(case["noise_seed"])
    loss = pair_loss(
        d["src"],
        d["tgt"],
        k1,
        k2,
        torch.tensor(data["logit_scale"]),
        flow=flow if recipe.dense_obj else None,
        threshold1=data["threshold1"],
        threshold2=data["threshold2"],
        flip_perm=perm,
        desc1_flip=d["src_flip"],
        desc2_flip=d["tgt_flip"],
        recipe=recipe,
        size=data["size"],
    )
    return loss.item()


def test_pair_loss_matches_calculate_loss(data):
    for name, case in data["cases"].items():
        assert case_loss(data, case, recipe_for(case)) == pytest.approx(case["loss"], rel=2e-6), (
            name
        )


def test_noise_changes_the_loss_so_the_seeded_case_tests_it(data):
    case = data["cases"]["dense_pair_augment_noise"]
    quiet = data["cases"]["dense_pair_augment"]
    assert abs(case["loss"] - quiet["loss"]) > 1e-3
    assert np.isfinite(case["loss"])


def test_wrong_clip_losses_fail_the_golden(data):
    """The scale taken as the logit itself instead of its exponential, or the cross-entropy in
    one direction only, miss ``cal_clip_loss``'s value."""
    c = data["clip"]
    f = []
    for s in c["seeds"]:
        x = torch.randn((c["n"], data["dim"]), generator=torch.Generator().manual_seed(s))
        f.append(x / x.norm(dim=-1, keepdim=True))
    raw = clip_loss(f[0], f[1], torch.tensor(data["logit_scale"]))
    assert abs(raw.item() - c["loss"]) > 1e-3
    scale = torch.tensor(data["logit_scale"]).exp()
    one_way = F.cross_entropy(scale * f[0] @ f[1].T, torch.arange(c["n"]))
    assert abs(one_way.item() - c["loss"]) > 1e-3


def test_wrong_flow_losses_fail_the_golden(data):
    """Another soft-argmax window, or the flow target with x and y swapped, miss the dense
    loss of ``calculate_loss``."""
    want = data["dense"]["random"]["3"]["loss"]
    d = family(data, "random")
    cells, target = main_term(data)
    right = flow_loss(
        SoftArgmaxFlow(grid=data["grid"], window=3)(d["src"], d["tgt"], cells), target
    )
    assert right.item() == pytest.approx(want, rel=2e-6)
    other = SoftArgmaxFlow(grid=data["grid"], window=4)(d["src"], d["tgt"], cells)
    assert abs(flow_loss(other, target).item() - want) > 1e-4
    pred = SoftArgmaxFlow(grid=data["grid"], window=3)(d["src"], d["tgt"], cells)
    assert abs(flow_loss(pred, target.flip(-1)).item() - want) > 1e-4


@pytest.mark.parametrize(
    "wrong", [{"self_flip_weight": 1.0}, {"double_flip_weight": 0.5}, {"dense_obj": False}]
)
def test_wrong_loss_compositions_fail_the_golden(data, wrong):
    """The pair-augmented dense case with a flip term weighted otherwise, or without the dense
    objective, misses ``calculate_loss``'s total."""
    case = data["cases"]["dense_pair_augment"]
    loss = case_loss(data, case, recipe_for(case).replace(**wrong))
    assert abs(loss - case["loss"]) > 1e-3, wrong
