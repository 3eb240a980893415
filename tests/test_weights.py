"""corr.weights: resolution order, the not-found message, local loading, the CLI."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import torch

from corr import weights as W


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty weights folder and HF cache, offline."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CORR_OFFLINE", raising=False)
    return wdir


def test_weights_dir_default(monkeypatch):
    monkeypatch.delenv("CORR_WEIGHTS_DIR", raising=False)
    repo = Path(W.__file__).resolve().parents[1]
    expected = repo / "weights" if (repo / "weights").is_dir() else Path.cwd() / "weights"
    assert W.weights_dir() == expected
    monkeypatch.setenv("CORR_WEIGHTS_DIR", "/some/where")
    assert W.weights_dir() == Path("/some/where")


def test_known_table():
    assert W.KNOWN_WEIGHTS["sd15"].hub_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert W.KNOWN_WEIGHTS["sd21"].hub_id == "stabilityai/stable-diffusion-2-1"
    b = W.KNOWN_WEIGHTS["dinov2_vitb14"]
    assert b.timm_name == "vit_base_patch14_dinov2.lvd142m"
    assert b.local_names == (
        "vit_base_patch14_dinov2.lvd142m.safetensors",
        "dinov2_vitb14_pretrain.pth",
    )
    g = W.KNOWN_WEIGHTS["dinov2_vitg14_reg"]
    assert g.timm_name == "vit_giant_patch14_reg4_dinov2.lvd142m"
    assert g.official_file == "dinov2_vitg14_reg4_pretrain.pth"
    assert g.hub_id == "timm/vit_giant_patch14_reg4_dinov2.lvd142m"


def test_missing_sd_names_every_place_quickly(env, tmp_path):
    start = time.monotonic()
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd15")
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for needle in (
        "explicit path",
        str(env / "stable-diffusion-v1-5"),
        str(tmp_path / "hf"),
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "runwayml/stable-diffusion-v1-5",
        "HF_HUB_OFFLINE=1",
        "python -m corr.weights download sd15",
        "never substituted",
    ):
        assert needle in msg, needle


def test_missing_dinov2_names_every_place(env, tmp_path):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("dinov2_vitb14_reg")
    msg = str(info.value)
    for needle in (
        str(env / "vit_base_patch14_reg4_dinov2.lvd142m.safetensors"),
        str(env / "dinov2_vitb14_reg4_pretrain.pth"),
        "timm/vit_base_patch14_reg4_dinov2.lvd142m",
        str(tmp_path / "hf"),
        "torch hub cache",
        "python -m corr.weights download dinov2_vitb14_reg",
    ):
        assert needle in msg, needle


def test_unreachable_hub_fails_fast_without_offline_flag(env, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("dinov2_vits14")
    assert time.monotonic() - start < 10
    assert "unreachable" in str(info.value)


def test_corr_offline_and_allow_download(env, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("CORR_OFFLINE", "1")
    with pytest.raises(W.WeightsNotFoundError, match="CORR_OFFLINE=1"):
        W.resolve("sd21")
    monkeypatch.delenv("CORR_OFFLINE")
    with pytest.raises(W.WeightsNotFoundError, match="allow_download=False"):
        W.resolve("sd21", allow_download=False)


def test_explicit_path_that_is_missing(env, tmp_path):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd15", path=tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value) and "does not exist" in str(info.value)
    with pytest.raises(W.WeightsNotFoundError):
        W.resolve(str(tmp_path / "also-missing"))


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    from corr.extractors.sd import build_sd_models

    models = build_sd_models("sd-tiny", pretrained=False, init_seed=3)
    root = tmp_path_factory.mktemp("sdw") / "stable-diffusion-v1-5"
    models.unet.save_pretrained(root / "unet")
    models.vae.save_pretrained(root / "vae")
    return root, models


def test_local_diffusers_folder_resolves_and_loads(env, tiny_sd_folder):
    from corr.extractors.registry import create_extractor
    from corr.extractors.sd import build_sd_models

    root, models = tiny_sd_folder
    assert (root / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    found = W.resolve("sd", path=root)
    assert found.source == "explicit" and found.format == "diffusers"
    assert W.resolve(str(root)).path == root  # a path as the request

    # the weights-folder convention: weights/stable-diffusion-v1-5/
    (env / "stable-diffusion-v1-5").symlink_to(root, target_is_directory=True)
    found = W.resolve("sd15")
    assert found.source == "weights-folder" and found.path == env / "stable-diffusion-v1-5"
    loaded = build_sd_models("sd15", pretrained=True)
    for k, v in models.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
    assert torch.equal(loaded.vae.encoder.conv_in.weight, models.vae.encoder.conv_in.weight)
    assert loaded.folder == env / "stable-diffusion-v1-5"
    assert loaded.model_id.startswith("sd15:") and str(root) in loaded.model_id

    ext = create_extractor("sd", pretrained=True, model=str(root), input_size=128)
    assert ext(torch.rand(1, 3, 128, 128))["sd8"].shape == (1, 32, 8, 8)
    assert ext.config()["model"] == W.resolve(str(root)).weights_id


def test_incomplete_folder_is_reported(env):
    bad = env / "stable-diffusion-v1-5"
    (bad / "unet").mkdir(parents=True)
    (bad / "unet" / "config.json").write_text("{}")
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd15")
    assert "no unet/diffusion_pytorch_model*.safetensors" in str(info.value)
    assert "no vae/config.json" in str(info.value)


def test_timm_safetensors_resolves_and_loads(env):
    from safetensors.torch import save_file

    from corr.extractors import dino as D

    src = D.build_tiny_dinov2(518, 0, init_seed=1)
    f = env / "vit_small_patch14_dinov2.lvd142m.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(f))
    found = W.resolve("dinov2_vits14")
    assert found.source == "weights-folder" and found.format == "safetensors" and found.path == f
    model = D.build_tiny_dinov2(168, 0, init_seed=2)
    D.load_dinov2_state_dict(model, W.load_state_dict(found.path))
    assert torch.equal(model.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert model.pos_embed.shape == (1, 1 + 144, 48)


def test_official_pth_converts_and_loads_in_the_full_architecture(env):
    """An official-layout dinov2_vits14_pretrain.pth (37x37 + cls positions, mask_token) in the
    weights folder goes through create_extractor('dinov2_vits14', pretrained=True)."""
    from corr.extractors import dino as D
    from corr.extractors.registry import create_extractor

    src, _ = D.build_dinov2_model("dinov2_vits14", pretrained=False, input_size=518, init_seed=7)
    sd = src.state_dict()
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    sd["mask_token"] = torch.zeros(1, 384)
    assert "blocks.0.attn.qkv.weight" in sd
    torch.save(sd, env / "dinov2_vits14_pretrain.pth")
    found = W.resolve("dinov2_vits14")
    assert found.format == "torch" and found.path.name == "dinov2_vits14_pretrain.pth"

    ext = create_extractor("dinov2_vits14", pretrained=True, input_size=224)
    assert torch.equal(ext.model.blocks[11].attn.qkv.weight, sd["blocks.11.attn.qkv.weight"])
    expected = D.resample_pos_embed_dinov2(sd["pos_embed"], 1, (16, 16))
    assert torch.equal(ext.model.pos_embed.data, expected)
    assert ext.config()["model"].startswith("dinov2_vits14:")


def test_loading_never_unpickles_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    f = tmp_path / "bad.pth"
    with open(f, "wb") as fh:
        pickle.dump({"w": Evil()}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        W.load_state_dict(f)
    with pytest.raises(ValueError, match="unsupported"):
        W.load_state_dict(tmp_path / "weights.npz")
    torch.save({"model": {"a": torch.ones(2)}}, tmp_path / "ok.pth")
    assert torch.equal(W.load_state_dict(tmp_path / "ok.pth")["a"], torch.ones(2))


def test_cli_list(env, capsys):
    assert W.main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(env) in out and "CORR_WEIGHTS_DIR" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(lines) == set(W.KNOWN_WEIGHTS)
    assert "missing" in lines["sd15"] and "stable-diffusion-v1-5/" in lines["sd15"]
    assert "dinov2_vitb14_pretrain.pth" in lines["dinov2_vitb14"]

    torch.save({"x": torch.zeros(1)}, env / "dinov2_vitb14_pretrain.pth")
    W.main(["list"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("  dinov2_vitb14 "))
    assert "present" in line and str(env / "dinov2_vitb14_pretrain.pth") in line


def test_cli_download_offline_is_actionable(env, capsys):
    start = time.monotonic()
    assert W.main(["download", "sd15", "dinov2_vitb14"]) == 1
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE=1" in err
    assert "python -m corr.weights download sd15" in err
    assert "stable-diffusion-v1-5" in err and str(env) in err
    assert W.main(["download", "nonsense"]) == 2
    assert not any(env.iterdir())


def test_diffusers_allow_patterns():
    pats = W.diffusers_allow_patterns()
    assert "unet/diffusion_pytorch_model.safetensors" in pats and "model_index.json" in pats
    assert "tokenizer/*" in pats and "scheduler/scheduler_config.json" in pats
    assert not any("text_encoder" in p for p in W.diffusers_allow_patterns(text_encoder=False))
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in W.diffusers_allow_patterns(
        variant="fp16"
    )


def _fake_hf_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for rel, content in files.items():
        target = snap / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            target.write_bytes(content.read_bytes())
        else:
            target.write_bytes(content)
    return snap


def test_hf_cache_is_used_offline(env, tmp_path, tiny_sd_folder):
    root, _ = tiny_sd_folder
    files = {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }
    snap = _fake_hf_cache(tmp_path / "hf", "stable-diffusion-v1-5/stable-diffusion-v1-5", files)
    found = W.resolve("sd15")
    assert found.source == "hf-cache" and found.path == snap
    assert found.weights_id == "stable-diffusion-v1-5/stable-diffusion-v1-5@" + snap.name

    dino_snap = _fake_hf_cache(
        tmp_path / "hf", "timm/vit_small_patch14_dinov2.lvd142m", {"model.safetensors": b"x"}
    )
    found = W.resolve("dinov2_vits14")
    assert found.source == "hf-cache" and found.path == dino_snap / "model.safetensors"

    # the weights folder comes first
    (env / "dinov2_vits14_pretrain.pth").write_bytes(b"x")
    assert W.resolve("dinov2_vits14").source == "weights-folder"
