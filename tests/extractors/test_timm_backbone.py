"""Any timm backbone in one line: "timm/<name>" and ModuleExtractor.from_timm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import corr
from corr.extractors import ModuleExtractor, create_extractor
from corr.weights import WeightsNotFoundError


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("CORR_OFFLINE", "1")  # never wait for an unreachable hub


def test_timm_name_builds_the_stages_with_the_models_own_normalisation():
    ext = create_extractor("timm/resnet18", pretrained=False, out_indices=(1, 2))
    assert isinstance(ext, ModuleExtractor)
    assert ext.input_size == 224  # resnet18's pretrained_cfg input size
    np.testing.assert_allclose(ext.mean.flatten(), [0.485, 0.456, 0.406], atol=1e-6)
    np.testing.assert_allclose(ext.std.flatten(), [0.229, 0.224, 0.225], atol=1e-6)
    maps = ext(torch.rand(1, 3, 224, 224))
    # resnet18 stages 1 and 2: 64 channels at stride 4, 128 at stride 8
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "feat0": (1, 64, 56, 56),
        "feat1": (1, 128, 28, 28),
    }
    same = ModuleExtractor.from_timm("resnet18", pretrained=False, out_indices=(1, 2))
    assert same.config()["mean"] == ext.config()["mean"] and same.input_size == 224


def test_local_pretrained_file_is_loaded(tmp_path):
    torch.manual_seed(3)
    ref = create_extractor("timm/resnet18", pretrained=False, out_indices=(1,))
    state = {k: v.contiguous() for k, v in ref.module.state_dict().items()}
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    ext = create_extractor("timm/resnet18", pretrained=True, pretrained_file=path, out_indices=(1,))
    for k, v in ext.module.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        create_extractor("timm/resnet18", pretrained=True, pretrained_file=tmp_path / "none.pt")


def test_hf_cache_is_used_offline_and_missing_weights_are_named(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="not in the Hugging Face cache.*CORR_OFFLINE"):
        create_extractor("timm/resnet18.a1_in1k", pretrained=True)
    # the same file in the cache's layout is found without the network
    torch.manual_seed(4)
    ref = create_extractor("timm/resnet18", pretrained=False, out_indices=(1,))
    snap = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0" * 40)
    state = {k: v.contiguous() for k, v in ref.module.state_dict().items()}
    save_file(state, str(snap / "model.safetensors"))
    ext = create_extractor("timm/resnet18.a1_in1k", pretrained=True, out_indices=(1,))
    assert all(torch.equal(v, state[k]) for k, v in ext.module.state_dict().items())


def test_hf_hub_names_are_timm_names_not_module_factory_specs():
    with pytest.raises(WeightsNotFoundError, match="hf-hub:timm/some_net"):
        create_extractor("hf-hub:timm/some_net", pretrained=True)
    with pytest.raises(KeyError, match="timm has no model 'no_such_net'"):
        create_extractor("timm/no_such_net", pretrained=False)


def test_matcher_runs_a_timm_backbone_by_name():
    m = corr.Matcher(
        ["timm/resnet18"],
        pretrained=False,
        device="cpu",
        extractor_options={"timm/resnet18": {"out_indices": (1, 2), "input_size": 128}},
    )
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    out = m.match(img, img, [[20.0, 30.0]])
    assert np.isfinite(out.keypoints1).all()
    assert m.extractors[0].config()["name"] == "resnet18"
