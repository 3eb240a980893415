"""The extractor contract: a module mapping a letterboxed image to named feature maps."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

FeatureMaps = dict[str, torch.Tensor]


class Extractor(nn.Module):
    """Base class of every feature extractor.

    An extractor sees the image letterboxed to ``input_size`` (the pipeline letterboxes it) as a
    ``(B, 3, T, T)`` float tensor in ``[0, 1]`` and returns named ``(B, C, h, w)`` float32 maps
    that cover the whole letterboxed square. Attributes used by the pipeline:

    - ``input_size``: the letterbox side ``T`` this extractor wants;
    - ``group``: maps of one extractor form one descriptor group, L2-normalised as a whole
      before groups are fused (``"sd"``, ``"dino"``, ...);
    - ``reduce``: whether co-PCA reduces each of its maps (True for SD layers);
    - ``resample``: the PIL filter used for the letterbox resize (``"lanczos"``, as both
      reference implementations, by default);
    - ``autocast``: ``None`` (default), or ``torch.bfloat16`` / ``torch.float16`` to run
      :meth:`extract` under ``torch.autocast`` (mixed precision: the weights stay in their
      dtype, matmuls and convolutions run in the lower one; the maps still come out float32).
      Set it with :meth:`set_autocast`; it is part of the feature-cache key.

    Subclasses implement :meth:`extract` and :meth:`config` (everything that changes the
    output: weights identity and settings; it keys the feature cache).
    """

    input_size: int = 224
    group: str = "custom"
    reduce: bool = False
    resample: str = "lanczos"
    autocast: torch.dtype | None = None

    def set_autocast(self, dtype: str | torch.dtype | None) -> Extractor:
        """Run the networks under ``torch.autocast(dtype)``: ``"bf16"``/``"fp16"`` (or the torch
        dtype); ``None`` or ``"off"`` turns it off. Returns ``self``."""
        self.autocast = parse_autocast(dtype)
        return self

    def extract(self, pixels: torch.Tensor, category: str | None = None) -> FeatureMaps:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor, category: str | None = None) -> FeatureMaps:
        """``pixels`` (B, 3, T, T) in [0, 1] -> ``{name: (B, C, h, w) float32}``."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__}: expected (B, 3, T, T) pixels, got {tuple(pixels.shape)}"
            )
        amp = (
            torch.autocast(self.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with amp:
            maps = self.extract(pixels, category=category)
        return {k: v.float() for k, v in maps.items()}

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_AUTOCAST_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def parse_autocast(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``None``/``"off"`` -> None; ``"bf16"``/``"bfloat16"``/``"fp16"``/``"float16"`` (or the
    torch dtype) -> that dtype. Anything else is refused by name."""
    if dtype is None or dtype == "off":
        return None
    if isinstance(dtype, torch.dtype):
        if dtype not in AUTOCAST_DTYPES.values():
            raise ValueError(f"autocast: unsupported dtype {dtype}; use bf16, fp16 or off")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    key = _AUTOCAST_ALIASES.get(key, key)
    if key not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast: unsupported dtype {dtype!r}; use bf16, fp16 or off")
    return AUTOCAST_DTYPES[key]


def autocast_name(dtype: torch.dtype) -> str:
    return next(k for k, v in AUTOCAST_DTYPES.items() if v == dtype)


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 over the names, shapes and values of a module's parameters and buffers."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


class ModuleExtractor(Extractor):
    """Wrap any ``nn.Module`` mapping an image tensor to a feature map as an extractor.

    ``module(x)`` may return a tensor ``(B, C, h, w)``, a sequence of them, or a mapping of
    name -> tensor. ``mean``/``std`` (per channel) normalise the ``[0, 1]`` pixels first, e.g.
    the ImageNet statistics. ``weights_id`` names the weights for the feature cache; when
    omitted, a fingerprint of the module's parameter values is used, so two different weight
    sets never share cache entries.

    Example::

        backbone = torchvision_like_model.features          # any conv net
        ext = ModuleExtractor(backbone, input_size=448, name="my-net",
                              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        corr.Matcher(extractors=[ext]).match(src, tgt, points)
    """

    def __init__(
        self,
        module: nn.Module | Callable[[torch.Tensor], Any],
        input_size: int,
        name: str = "custom",
        group: str | None = None,
        reduce: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        weights_id: str | None = None,
        resample: str = "lanczos",
    ) -> None:
        super().__init__()
        if input_size <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        self.module = module
        self.name = name
        self.input_size = int(input_size)
        self.group = group or name
        self.reduce = reduce
        self.resample = resample
        self._weights_id = weights_id
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1))

    @classmethod
    def from_timm(cls, name: str, pretrained: bool = True, **kwargs: Any) -> ModuleExtractor:
        """Any timm backbone: ``ModuleExtractor.from_timm("convnext_base.fb_in22k",
        out_indices=(1, 2))``; mean, std and input size from its ``pretrained_cfg`` (see
        :func:`corr.extractors.timm_backbone.timm_extractor` for the options)."""
        from .timm_backbone import timm_extractor

        return timm_extractor(name, pretrained=pretrained, **kwargs)

    def extract(self, pixels: torch.Tensor, category: str | None = None) -> FeatureMaps:
        x = pixels
        if self.mean is not None:
            x = (x - self.mean) / self.std
        out = self.module(x)
        if isinstance(out, torch.Tensor):
            out = {"feat": out}
        elif isinstance(out, Mapping):
            out = dict(out)
        elif isinstance(out, Sequence):
            out = {f"feat{i}": t for i, t in enumerate(out)}
        else:
            raise TypeError(
                f"{self.name}: the module returned {type(out).__name__}, expected tensor(s)"
            )
        for k, v in out.items():
            if not isinstance(v, torch.Tensor) or v.ndim != 4:
                raise ValueError(f"{self.name}: output {k!r} must be a (B, C, h, w) tensor")
        return out

    def config(self) -> dict[str, Any]:
        if self._weights_id is None:
            self._weights_id = (
                module_fingerprint(self.module) if isinstance(self.module, nn.Module) else self.name
            )
        return {
            "class": "ModuleExtractor",
            "name": self.name,
            "weights": self._weights_id,
            "input_size": self.input_size,
            "mean": None if self.mean is None else self.mean.flatten().tolist(),
            "std": None if self.std is None else self.std.flatten().tolist(),
            "resample": self.resample,
        }
