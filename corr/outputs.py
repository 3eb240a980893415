"""Result containers: dataclasses that also read like dicts (as diffusers' ``BaseOutput``).

``out.keypoints1`` and ``out["keypoints1"]`` are the same object; ``dict(out)``, ``out.keys()``,
``"flip" in out`` and ``for k in out`` see the fields that are set (not ``None``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


class BaseOutput(Mapping):
    """Base of the result containers (as diffusers' ``BaseOutput``): a dataclass that reads like
    a mapping of the fields whose value is not ``None``."""

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise TypeError(f"{type(self).__name__} keys are field names, got {key!r}")
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def keys(self) -> list[str]:  # type: ignore[override]
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self[k] for k in self.keys())

    def _converted(self, convert) -> dict[str, Any]:
        return {
            f.name: convert(getattr(self, f.name))
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name)
            for f in fields(self)
        }


@dataclass
class MatchOutput(BaseOutput):
    """Matches between a source and a target image (LoFTR / kornia keys).

    - ``keypoints0`` ``(N, 2)``: source points ``(x, y)`` in original source pixels;
    - ``keypoints1`` ``(N, 2)``: their matches in original target pixels; a row is NaN where
      its source point was NaN (not visible) and was not matched;
    - ``confidence`` ``(N,)``: cosine similarity of the fused descriptors of the source
      point's cell and of its most similar target cell, in ``[-1, 1]`` (higher is surer); NaN
      on NaN rows;
    - ``flip``: with ``flip=True``, what the pose alignment decided (see :meth:`Matcher.match`).

    Arrays are float64 numpy arrays, or float32 torch tensors on the matcher's device with
    ``return_tensors="pt"``.
    """

    keypoints0: Array
    keypoints1: Array
    confidence: Array
    flip: dict[str, Any] | None = None


@dataclass
class DenseOutput(BaseOutput):
    """Dense correspondence of every source cell (or pixel, when upsampled).

    - ``points0`` ``(h, w, 2)``: the source positions, original source pixels;
    - ``coords1`` ``(h, w, 2)``: their matches, absolute original target pixels (a
      correspondence map);
    - ``flow`` ``(h, w, 2)``: ``coords1 - points0``, the displacement in pixels (the
      optical-flow convention: ``target = source + flow``);
    - ``confidence`` ``(h, w)``: cosine similarity of the match, ``[-1, 1]``;
    - ``valid`` ``(h, w)`` bool: the source position lies on image content (not padding).

    ``(h, w)`` is the feature grid ``(g, g)``, or the source image ``(H, W)`` with
    ``upsample=True`` (then ``points0[y, x] = (x, y)``).
    """

    points0: Array
    coords1: Array
    flow: Array
    confidence: Array
    valid: Array


@dataclass
class WarpOutput(BaseOutput):
    """The source image warped into the target's frame (:meth:`Matcher.warp`).

    Every field has the *target* image's size ``(H_t, W_t)``; pixel ``[y, x]`` is target pixel
    ``(x, y)``:

    - ``warped`` ``(H_t, W_t, 3)`` uint8 RGB: the source sampled (bilinearly) at ``coords``;
      0 where not ``valid``;
    - ``valid`` ``(H_t, W_t)`` bool: the target pixel lies on image content, its matched source
      point lies inside the source image, and (with ``min_confidence``) its confidence is high
      enough;
    - ``coords`` ``(H_t, W_t, 2)``: the source point ``(x, y)`` each target pixel samples, in
      original source pixels (``x`` is the pixel with column index ``x``, as in
      ``cv2.remap``);
    - ``confidence`` ``(H_t, W_t)``: cosine similarity of the match, ``[-1, 1]``.

    numpy arrays (``coords``/``confidence`` float64), or torch tensors on the matcher's device
    with ``return_tensors="pt"`` (float32; ``warped`` stays uint8, ``valid`` bool).
    """

    warped: Array
    valid: Array
    coords: Array
    confidence: Array


@dataclass
class SwapOutput(BaseOutput):
    """The source's instance put in place of the target's (:func:`corr.swap.swap`).

    Every image field has the *target* image's size ``(H_t, W_t)``, pixel ``[y, x]`` being
    target pixel ``(x, y)``:

    - ``initial`` ``(H_t, W_t, 3)`` uint8 RGB: the target with the pixels of ``mask`` taken
      from the source instance through the dense correspondence (the initial swap);
    - ``refined`` ``(H_t, W_t, 3)`` uint8 RGB: ``initial`` after the diffusion refinement
      (``None`` with ``refine=False``);
    - ``mask`` ``(H_t, W_t)`` bool: the target pixels the swap replaced (the target instance
      where a source-instance point was found);
    - ``mask_src`` ``(H_s, W_s)`` / ``mask_tgt`` ``(H_t, W_t)`` bool: the two instance masks
      used, in original source / target pixels;
    - ``coords`` ``(H_t, W_t, 2)``: the source point ``(x, y)`` each target pixel samples
      (original source pixels); ``confidence`` ``(H_t, W_t)``: cosine similarity of that
      match, ``[-1, 1]``;
    - ``masks_from``: ``"given"`` or ``"cosegmentation"`` (see :func:`corr.swap.swap`);
    - ``config``: the settings that made it (JSON-ready).
    """

    initial: np.ndarray
    mask: np.ndarray
    mask_src: np.ndarray
    mask_tgt: np.ndarray
    coords: np.ndarray
    confidence: np.ndarray
    masks_from: str
    config: dict[str, Any]
    refined: np.ndarray | None = None


def to_torch(out: BaseOutput, device: torch.device) -> BaseOutput:
    """The same output with every numpy array as a torch tensor on ``device`` (float32; bool
    stays bool)."""

    def convert(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(device, torch.float32 if t.is_floating_point() else t.dtype)

    return type(out)(**out._converted(convert))
