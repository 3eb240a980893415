"""GeoAware-SC's trained post-processor (``AggregationNetwork``), for any list of feature groups.

Reference: Junyi42/GeoAware-SC @99fd6b6, ``model_utils/projection_network.py:AggregationNetwork``
with ``model_utils/resnet.py:BottleneckBlock`` (Detectron2's block, as in ODISE and Diffusion
Hyperfeatures). What it computes, for an input ``(B, sum C_i, g, g)`` (the groups concatenated
along channels, in ``feature_dims`` order):

1. in training mode, ``F.dropout(x, p=feat_map_dropout)`` on the whole input (element-wise,
   scaled by ``1 / (1 - p)``; not channel dropout);
2. per group ``i``: one bottleneck block ``C_i -> P`` (stride 1): ``conv1`` (k=1, ``C_i -> P/4``)
   -> GN -> ReLU -> ``conv2`` (k=3, pad 1, ``P/4 -> P/4``) -> GN -> ReLU -> ``conv3`` (k=1,
   ``P/4 -> P``) -> GN, plus the shortcut (a k=1 conv ``C_i -> P`` + GN when ``C_i != P``, else
   the identity), then ReLU. No conv has a bias; every GN has ``num_norm_groups`` groups and
   affine weights. Convolutions are initialised with ``c2_msra_fill`` (Kaiming normal,
   fan_out, ReLU gain), in the reference's order, so a seeded construction gives the
   reference's initial weights;
3. ``softmax(mixing_weights)`` over groups weights the block outputs, which are summed.

The output ``(B, P, g, g)`` is *not* normalised: the reference L2-normalises each cell afterwards
(see :func:`corr.adapters.normalize_descriptor`). ``logit_scale`` (init ``log(1/0.07)``) is the
learned inverse temperature of the sparse CLIP loss; ``self_logit_scale`` (init ``log(10)``)
belongs to the reference's unused self-contrastive loss and is kept so checkpoints round-trip.

State-dict keys are the reference's, so its ``.PTH`` files load as they are:
``logit_scale``, ``self_logit_scale``, ``mixing_weights``,
``bottleneck_layers.{i}.0.{shortcut,conv1,conv2,conv3}.weight`` and ``....norm.{weight,bias}``.
Left out of the reference class (never set by ``pck_train.py``): multiple ``save_timestep``
(always ``[1]``), ``pos_embedding`` and ``last_layer`` (always ``None``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import AdapterConfig

__all__ = ["AggregationNetwork", "BottleneckBlock", "ConvNorm", "c2_msra_fill"]


def c2_msra_fill(module: nn.Conv2d) -> None:
    """fvcore's ``c2_msra_fill``: Kaiming-normal weights (fan_out, ReLU), zero bias."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class ConvNorm(nn.Conv2d):
    """A bias-free ``Conv2d`` followed by its GroupNorm ``.norm`` (reference ``resnet.Conv2d``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, groups_norm: int
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False
        )
        self.norm = nn.GroupNorm(groups_norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        return self.norm(x)


class BottleneckBlock(nn.Module):
    """Detectron2's bottleneck (reference ``resnet.BottleneckBlock``, stride 1, one group)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bottleneck_channels: int,
        num_norm_groups: int,
        kernel_size: tuple[int, int, int],
    ) -> None:
        super().__init__()
        # the reference builds shortcut, conv1, conv2, conv3 (each Conv2d's own init draws from
        # the RNG), then c2_msra_fill's conv1, conv2, conv3, shortcut: same order here
        self.shortcut = (
            ConvNorm(in_channels, out_channels, 1, num_norm_groups)
            if in_channels != out_channels
            else None
        )
        k1, k2, k3 = kernel_size
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, k1, num_norm_groups)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, k2, num_norm_groups)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, k3, num_norm_groups)
        for layer in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


class AggregationNetwork(nn.Module):
    """One bottleneck per feature group, softmax-mixed: ``(B, sum C_i, g, g) -> (B, P, g, g)``.

    Built from an :class:`~corr.adapters.AdapterConfig` (the module docstring says what it
    computes). A ``(C, g, g)`` input (no batch) gives a ``(P, g, g)`` output. An input whose
    channel count is not ``sum(feature_dims)`` raises ValueError naming the groups.
    """

    def __init__(self, config: AdapterConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else AdapterConfig()
        self.feature_dims = tuple(config.feature_dims)
        self.feat_map_dropout = config.feat_map_dropout
        self.logit_scale = nn.Parameter(torch.ones([]) * config.logit_scale_init)
        self.self_logit_scale = nn.Parameter(torch.ones([]) * math.log(config.contrastive_temp))
        p = config.projection_dim
        self.bottleneck_layers = nn.ModuleList(
            nn.Sequential(BottleneckBlock(c, p, p // 4, config.num_norm_groups, config.kernel_size))
            for c in self.feature_dims
        )
        self.mixing_weights = nn.Parameter(torch.ones(len(self.feature_dims)))

    @property
    def projection_dim(self) -> int:
        return self.config.projection_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.ndim == 3
        if squeeze:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(
                f"adapter input must be (B, C, g, g) or (C, g, g), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"adapter expects {self.config.in_channels} input channels "
                f"({self.config.describe_groups()}), got {x.shape[1]}; build the input with "
                "corr.adapters.adapter_input from the same extractors the adapter was trained on"
            )
        if self.feat_map_dropout > 0 and self.training:
            x = F.dropout(x, p=self.feat_map_dropout)
        weights = F.softmax(self.mixing_weights, dim=0)
        out = None
        start = 0
        for i, (block, dim) in enumerate(
            zip(self.bottleneck_layers, self.feature_dims, strict=True)
        ):
            y = weights[i] * block(x[:, start : start + dim])
            start += dim
            out = y if out is None else out + y
        assert out is not None
        return out[0] if squeeze else out
