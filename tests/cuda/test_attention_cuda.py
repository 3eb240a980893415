"""Attention kernels on CUDA: PyTorch's fused SDPA kernels (flash / memory-efficient) give the
math kernel's features, and xformers (where importable) gives SDPA's.

The models are tiny SD-like and DINOv2-like networks whose attention heads the fused kernels
accept (head dimensions 8 and 16): forcing the fused kernels fails loudly ("No available
kernel") instead of silently falling back. Tolerances, relative L2 error per map: fp32 5e-3,
bf16 3e-2 (bf16 rounding of the attention's inputs and softmax).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cuda_helpers import REPO, rel_err

from corr.extractors import create_extractor

pytestmark = pytest.mark.cuda

CONFIGS = REPO / "corr" / "extractors" / "configs"
TOL = {"fp32": 5e-3, "bf16": 3e-2}
SD_SIZE, DINO_SIZE = 192, 168


def _sd_folder(tmp_path: Path) -> Path:
    """The tiny SD of the tests with wider blocks: 4 heads of 8 and 16 channels (the bundled
    tiny UNet's heads of 2-6 channels are too narrow for the fused kernels)."""
    unet = json.loads((CONFIGS / "sd_tiny_unet.json").read_text())
    unet.update(block_out_channels=[32, 64, 64, 64], attention_head_dim=4, norm_num_groups=8)
    vae = json.loads((CONFIGS / "sd_tiny_vae.json").read_text())
    for name, cfg in (("unet", unet), ("vae", vae)):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    return tmp_path


def _models(tmp_path, device, dtype):
    sd = create_extractor(
        "sd", pretrained=False, model=str(_sd_folder(tmp_path)), input_size=SD_SIZE, dtype=dtype
    ).to(device)
    dino = create_extractor("dinov2-tiny", pretrained=False, input_size=DINO_SIZE, dtype=dtype)
    return sd, dino.to(device)


def _pixels(size: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(size)
    return torch.rand(2, 3, size, size, generator=g).to(device)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fused_sdpa_kernels_give_the_math_kernels_features(tmp_path, cuda, dtype):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    sd, dino = _models(tmp_path, cuda, dtype)
    for ext, size in ((sd, SD_SIZE), (dino, DINO_SIZE)):
        x = _pixels(size, cuda)
        with sdpa_kernel(fused):
            got = ext(x)
        with sdpa_kernel(SDPBackend.MATH):
            want = ext(x)
        for k in want:
            assert torch.isfinite(got[k]).all(), k
            err = rel_err(got[k], want[k])
            assert err <= TOL[dtype], (type(ext).__name__, k, err)


def test_xformers_gives_the_sdpa_features(tmp_path, cuda):
    try:
        import xformers  # noqa: F401
        import xformers.ops  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means: not usable here
        pytest.skip(f"xformers is not importable here ({type(err).__name__}: {err})"[:300])
    sd, _ = _models(tmp_path, cuda, "bf16")
    x = _pixels(SD_SIZE, cuda)
    want = sd(x)  # PyTorch SDPA
    sd.xformers = True  # the extractor switches the UNet to xformers on its next pass
    got = sd(x)
    assert sd.xformers, "xformers could not be enabled (the extractor fell back to SDPA)"
    for k in want:
        err = rel_err(got[k], want[k])
        assert err <= TOL["bf16"], (k, err)
