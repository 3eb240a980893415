"""Issue 23.6: one preflight names everything a run lacks (data, every weight, optional packages)
with the command that fixes each, before anything is loaded; ``corr.match`` / ``Matcher`` with
missing weights raise one error naming all of them, whose traceback stays out of the internals."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

import corr
import corr.extractors.registry as registry
from corr.eval.cli import main as eval_main
from corr.extract import main as extract_main
from corr.weights import WeightsNotFoundError

CORR = Path(corr.__file__).resolve().parent


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A machine without any weights (empty weights folder, caches, torch hub), offline."""
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CORR_OFFLINE", "1")
    return tmp_path


@pytest.fixture
def spy(monkeypatch):
    """Records every extractor built (none may be)."""
    built: list[str] = []
    real = registry.create_extractor

    def create(name, *a, **k):
        built.append(name)
        return real(name, *a, **k)

    monkeypatch.setattr(registry, "create_extractor", create)
    return built


@pytest.fixture
def no_transformers(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(  # where the preflight looks; the CLI never imports transformers
        importlib.util, "find_spec", lambda m, *a: None if m == "transformers" else real(m, *a)
    )


@pytest.fixture
def preflight_module():
    import corr.preflight

    return corr.preflight


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    return err


def test_tss_names_the_data_and_every_weight_at_once(no_weights, spy, tmp_path, capsys):
    root = tmp_path / "nowhere" / "TSS_CVPR2016"
    out = tmp_path / "run"
    assert eval_main(["tss", "--root", str(root), "--out", str(out), "--no-progress"]) == 2
    err = _error(capsys)
    assert "this run cannot start (3 problems; nothing was loaded)" in err
    assert "TSS" in err and "download tss" in err
    assert "weights sd15 (Stable Diffusion 1.5" in err and "weights dinov2_vitb14 (" in err
    assert spy == [] and not out.exists()  # no model built, no run folder


def test_eval_names_the_data_every_weight_and_package_at_once(
    no_weights, spy, no_transformers, tmp_path, capsys
):
    out = tmp_path / "run"
    root = tmp_path / "nowhere" / "SPair-71k"
    args = ["spair", "--root", str(root), "--prompt", "a photo of a {category}"]
    assert eval_main([*args, "--out", str(out), "--no-progress"]) == 2
    err = _error(capsys)
    assert "this run cannot start (4 problems; nothing was loaded)" in err
    assert f"SPair-71k: not found: {root}" in err
    assert "weights sd15 (Stable Diffusion 1.5" in err and "weights dinov2_vitb14 (" in err
    assert "download: offline (CORR_OFFLINE=1)" in err
    assert "needs the transformers package" in err
    # the command that fixes each
    assert f"python -m corr.datasets download spair --root {root.parent}" in err
    assert "python -m corr.weights download sd15 dinov2_vitb14 " in err
    assert 'pip install "semcorr[text]"' in err
    assert spy == [] and not out.exists()  # nothing built, nothing written


def test_extract_names_the_images_and_every_weight_at_once(no_weights, spy, tmp_path, capsys):
    out = tmp_path / "features"
    argv = ["--images", str(tmp_path / "none"), "--out", str(out), "--no-progress"]
    assert extract_main(argv) == 2
    err = _error(capsys)
    assert "3 problems" in err and "--images" in err and "no such folder" in err
    assert "python -m corr.weights download sd15 dinov2_vitb14 " in err
    assert spy == [] and not out.exists()


def _files(tb) -> list[str]:
    return [Path(f.filename).resolve().as_posix() for f in traceback.extract_tb(tb)]


def test_match_and_matcher_raise_one_error_without_internals(no_weights, spy):
    with pytest.raises(WeightsNotFoundError) as info:
        corr.match(CORR / "samples" / "tiger_a.jpg", CORR / "samples" / "tiger_b.jpg", [[5, 5]])
    text = str(info.value)
    assert "weights sd15 (" in text and "weights dinov2_vitb14 (" in text
    assert "were not found" in text and "Random weights are never substituted" in text
    assert "python -m corr.weights download sd15 dinov2_vitb14 " in text
    files = _files(info.value.__traceback__)
    assert [f for f in files if f.startswith(CORR.as_posix())] == [(CORR / "api.py").as_posix()]
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Matcher(...): raised before any extractor is built, from the top of the stack
    with pytest.raises(WeightsNotFoundError, match="weights dinov2_vitb14") as info:
        corr.Matcher(device="cpu")
    files = [f for f in _files(info.value.__traceback__) if f.startswith(CORR.as_posix())]
    assert files == [(CORR / n).as_posix() for n in ("matcher.py", "extractors/registry.py")]
    assert spy == []


def test_present_weights_are_not_named_and_the_hub_counts_when_reachable(
    no_weights, monkeypatch, preflight_module
):
    PreflightError, preflight = preflight_module.PreflightError, preflight_module.preflight
    (no_weights / "weights").mkdir()
    (no_weights / "weights" / "dinov2_vitb14_pretrain.pth").write_bytes(b"\0")
    with pytest.raises(PreflightError) as info:
        preflight(["sd15", "dinov2_vitb14"])
    assert [p.what.split(" (")[0] for p in info.value.problems] == ["weights sd15"]
    # online, weights the hub can provide are fetched when the model loads: no problem
    import corr.weights.missing as missing  # where the missing weights are decided

    monkeypatch.setattr(missing, "offline_reason", lambda: None)
    monkeypatch.setattr(missing, "hub_unreachable_reason", lambda: None)
    assert preflight(["sd15", "dinov2_vitb14"]) is None
    # an explicit path that is not there always is one
    with pytest.raises(PreflightError, match="nowhere/sd"):
        preflight(["sd"], options={"sd": {"model": str(no_weights / "nowhere" / "sd")}})


def test_specs_packages_and_the_text_encoder_are_checked(
    no_weights, monkeypatch, tmp_path, preflight_module
):
    PreflightError, preflight = preflight_module.PreflightError, preflight_module.preflight
    with pytest.raises(PreflightError) as info:
        preflight(
            ["corr.io:load_image", "no-such-net", "corr.contrib.mobilenet:DEFAULT_STAGES"],
            extras=["warp"],
        )
    whats = [p.what for p in info.value.problems]
    assert "load_image() takes no 'pretrained' argument, so it is not an extractor" in whats[0]
    assert whats[1].startswith("unknown extractor 'no-such-net'; registered: ")
    assert "'DEFAULT_STAGES' is a tuple, not a factory function" in whats[2]
    monkeypatch.setattr(preflight_module, "module_available", lambda m: False)
    problems = preflight_module.extras_problems(["warp", "xformers"])
    assert [p.fix for p in problems] == [
        'pip install "semcorr[warp]"',
        'pip install "semcorr[xformers]"',
    ]
    with pytest.raises(PreflightError, match=r"xformers attention \(sd-tiny\) needs the xformers"):
        preflight(["sd-tiny"], pretrained=False, options={"sd-tiny": {"xformers": True}})
    # a prompt needs the text encoder folders of the SD weights it resolves
    folder = tmp_path / "weights" / "stable-diffusion-v1-5"
    for part in ("unet", "vae"):
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text("{}")
        (folder / part / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 8)
    monkeypatch.setattr(preflight_module, "module_available", lambda m: True)
    with pytest.raises(PreflightError) as info:
        preflight(["sd15"], options={"sd15": {"prompt": "a {category}"}})
    (problem,) = info.value.problems
    assert f"needs text_encoder/ and tokenizer/ in {folder}" in problem.what
    assert problem.fix.startswith("python -m corr.weights download sd15")
    assert preflight(["sd15"]) is None  # without a prompt the folder is enough
