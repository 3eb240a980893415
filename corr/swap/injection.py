"""Feature injection by forward hooks: record a UNet layer's output along the DDIM inversion,
put it back at the same timestep during the DDIM sampling.

This is the refinement's way of keeping the initial swap's layout while the sampling repairs
its seams (the SD+DINO paper's "re-injects the spatial features extracted along the
inversion"; the mechanism of Plug-and-Play diffusion features, Tumanyan et al., CVPR 2023,
which injects decoder features during the first steps of the sampling). Nothing of the
UNet is copied or changed: :class:`FeatureInjector` registers one forward hook per layer on
entering its ``with`` block and removes every one on leaving it, also on an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..extractors.sd_layers import as_tensor, sd_layer_module


class HookEvent(NamedTuple):
    """One hook firing: ``layer`` (decoder layer number, :mod:`corr.extractors.sd_layers`),
    ``path`` (the module's dotted path in the UNet), ``step`` (0-based step of the current
    pass), ``timestep`` (the diffusion timestep the UNet was called with) and ``action``
    (``"record"`` during the inversion, ``"inject"`` during the sampling)."""

    layer: int
    path: str
    step: int
    timestep: int
    action: str


def _replace_tensor(output: Any, value: torch.Tensor) -> Any:
    """``output`` with its tensor (the one :func:`as_tensor` takes) replaced by ``value``."""
    if isinstance(output, torch.Tensor):
        return value.to(output.dtype)
    if isinstance(output, tuple):
        return (value.to(output[0].dtype), *output[1:])
    if isinstance(output, list):
        return [value.to(output[0].dtype), *output[1:]]
    raise TypeError(f"cannot inject into a module output of type {type(output).__name__}")


class FeatureInjector:
    """Forward hooks on the outputs of decoder layers ``layers`` of ``unet``.

    Use as ``with injector:``; inside, set :attr:`action` (``"record"``, ``"inject"`` or
    ``None``: do nothing) and call :meth:`at` before each UNet call with the pass's step and
    timestep. ``record`` keeps a copy of each layer's output per timestep; ``inject``
    replaces the output by the copy recorded at the same timestep (a timestep without one is
    refused: the inversion and the sampling must use the same timesteps). :attr:`events` lists
    every firing (:class:`HookEvent`).
    """

    def __init__(self, unet: nn.Module, layers: Sequence[int]) -> None:
        self.layers = tuple(int(x) for x in layers)
        self.modules = {layer: sd_layer_module(unet, layer) for layer in self.layers}
        self.stored: dict[tuple[int, int], torch.Tensor] = {}
        self.events: list[HookEvent] = []
        self.action: str | None = None
        self.step = -1
        self.timestep = -1
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def at(self, step: int, timestep: int, action: str | None) -> None:
        """The next UNet call is step ``step`` at ``timestep``, doing ``action`` there."""
        if action not in (None, "record", "inject"):
            raise ValueError(f"action must be 'record', 'inject' or None, got {action!r}")
        self.step, self.timestep, self.action = int(step), int(timestep), action

    def _hook(self, layer: int, path: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if self.action is None:
                return None
            key = (layer, self.timestep)
            self.events.append(HookEvent(layer, path, self.step, self.timestep, self.action))
            if self.action == "record":
                self.stored[key] = as_tensor(output).detach().clone()
                return None
            if key not in self.stored:
                raise RuntimeError(
                    f"no feature of decoder layer {layer} was recorded at timestep "
                    f"{self.timestep}: invert with the same steps before sampling"
                )
            return _replace_tensor(output, self.stored[key])

        return hook

    def __enter__(self) -> FeatureInjector:
        if self.handles:
            raise RuntimeError("this FeatureInjector's hooks are already registered")
        for layer, (path, module) in self.modules.items():
            self.handles.append(module.register_forward_hook(self._hook(layer, path)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.action = None
