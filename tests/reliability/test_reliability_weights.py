"""Issue 14.8 and the weights cases of 7b: checkpoints load with safetensors or
``torch.load(weights_only=True)`` only. A pickle payload that would create a marker file is
refused without running (DINOv2 ``.pth``, ``corr.weights.load_state_dict``, a diffusers folder's
``.bin``), and every corrupt or hostile file gives one line naming it, never torch's advice to
retry with ``weights_only=False``."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from corr.eval.cli import main
from corr.extractors.registry import create_extractor
from corr.weights import UnsafeWeightsError, WeightsFileError, load_state_dict


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if it ever runs."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a pickle payload was executed"


def _hostile_files(folder, marker) -> dict:
    folder.mkdir(exist_ok=True)
    files = {
        "payload.pth": lambda f: torch.save({"w": _Payload(marker)}, f),
        "payload-raw.pt": lambda f: f.write_bytes(pickle.dumps({"w": _Payload(marker)}, 2)),
        "random.pth": lambda f: f.write_bytes(os.urandom(4096)),
        "random.safetensors": lambda f: f.write_bytes(os.urandom(4096)),
        "empty.bin": lambda f: f.write_bytes(b""),
    }
    for name, write in files.items():
        write(folder / name)
    return {name: folder / name for name in files}


def test_load_state_dict_refuses_every_hostile_or_corrupt_file(tmp_path, marker):
    for name, path in _hostile_files(tmp_path / "w", marker).items():
        with pytest.raises(WeightsFileError) as info:
            load_state_dict(path)
        text = str(info.value)
        assert text.startswith(f"{path}: ") and "\n" not in text, name
        assert "weights_only" not in text and "trusted source" in text, name
        assert info.value.__cause__ is None and info.value.__suppress_context__, name
        if name.startswith("payload"):
            assert isinstance(info.value, UnsafeWeightsError), name
            assert "would call io.open" in text or "would call builtins.open" in text, name


def test_dinov2_pth_with_a_payload_is_refused_unrun(
    minireal, tmp_path, marker, monkeypatch, capsys
):
    evil = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(1), "x": _Payload(marker)}, evil)
    # found in the weights folder by `python -m corr.eval` (create_extractor, build_dinov2_model,
    # load_state_dict): one line naming it, exit 2, nothing written
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "run"
    root = str(minireal / "SPair-71k")
    args = [
        "spair",
        "--root",
        root,
        "--extractor",
        "dinov2_vits14",
        "--limit",
        "1",
        "--dino-size",
        "56",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {evil}: refused: its pickle would call")
    assert not any("weights_only" in line for line in err) and not out.exists()


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from corr.extractors.sd import build_sd_models

    models = build_sd_models("sd-tiny", pretrained=False, init_seed=3)
    root = tmp_path_factory.mktemp("sd") / "tiny-sd"
    models.unet.save_pretrained(root / "unet")
    models.vae.save_pretrained(root / "vae")
    return root


def test_diffusers_folder_with_hostile_weights_is_refused_unrun(tiny_sd, tmp_path, marker):
    ok = create_extractor("sd", pretrained=True, model=str(tiny_sd), input_size=128)
    assert str(tiny_sd) in ok.config()["model"]  # the intact folder loads
    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd, folder)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_state_dict(unet)
    unet.unlink()
    bin_file = unet.with_suffix(".bin")
    torch.save({**state, "payload": _Payload(marker)}, bin_file)
    with pytest.raises(UnsafeWeightsError) as info:
        create_extractor("sd", pretrained=True, model=str(folder), input_size=128)
    assert str(info.value).startswith(f"{bin_file}: refused: its pickle would call")
    # a corrupt safetensors file in the same kind of folder: named, one line
    torch.save(state, bin_file)
    vae = folder / "vae" / "diffusion_pytorch_model.safetensors"
    vae.write_bytes(os.urandom(2048))
    with pytest.raises(WeightsFileError, match=f"^{vae}: not a readable .safetensors file"):
        create_extractor("sd", pretrained=True, model=str(folder), input_size=128)
