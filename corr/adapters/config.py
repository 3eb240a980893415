"""The adapter's configuration: which feature groups it takes and how wide it projects.

Defaults are GeoAware-SC's (Junyi42/GeoAware-SC @99fd6b6): the constructor arguments of
``model_utils/projection_network.py:AggregationNetwork`` *as ``pck_train.py:main`` passes them*
(``feature_dims=[640, 1280, 1280, 768]``, ``projection_dim=args.PROJ_DIM`` = 768,
``feat_map_dropout=args.FEAT_MAP_DROPOUT`` = 0.2); the class's own defaults differ
(``projection_dim=384``, ``feat_map_dropout=0.0``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "AdapterConfig",
    "REFERENCE_FEATURE_DIMS",
    "REFERENCE_GROUP_NAMES",
    "REFERENCE_PROJECTION_DIM",
    "REFERENCE_FEAT_MAP_DROPOUT",
    "REFERENCE_NUM_NORM_GROUPS",
    "REFERENCE_KERNEL_SIZE",
    "REFERENCE_LOGIT_SCALE_INIT",
    "REFERENCE_CONTRASTIVE_TEMP",
    "CONFIG_FORMAT",
]

#: pck_train.py:main, ``feature_dims = [640,1280,1280,768]``: SD s3 (decoder layer 8, 60 x 60),
#: s4 (layer 5, 30 x 30), s5 (layer 2, 15 x 15), DINOv2-B layer-11 tokens.
REFERENCE_FEATURE_DIMS = (640, 1280, 1280, 768)
#: our names of those groups (corr.extractors: ``sd8``, ``sd5``, ``sd2``, ``dino``), in that order
REFERENCE_GROUP_NAMES = ("sd8", "sd5", "sd2", "dino")
#: pck_train.py argparse ``--PROJ_DIM`` default 768 (AggregationNetwork's own default is 384)
REFERENCE_PROJECTION_DIM = 768
#: pck_train.py argparse ``--FEAT_MAP_DROPOUT`` default 0.2 (the class's own default is 0.0)
REFERENCE_FEAT_MAP_DROPOUT = 0.2
#: AggregationNetwork ``num_norm_groups=32`` (GroupNorm groups of every norm in the blocks)
REFERENCE_NUM_NORM_GROUPS = 32
#: AggregationNetwork ``kernel_size=[1,3,1]`` (conv1, conv2, conv3 of each bottleneck)
REFERENCE_KERNEL_SIZE = (1, 3, 1)
#: AggregationNetwork ``self.logit_scale = log(1 / 0.07)`` (CLIP's initial temperature)
REFERENCE_LOGIT_SCALE_INIT = math.log(1 / 0.07)
#: AggregationNetwork ``contrastive_temp=10``: ``self_logit_scale = log(10)`` (unused by the
#: default recipe: only SELF_CONTRAST_WEIGHT > 0 would read it; kept for checkpoint keys)
REFERENCE_CONTRASTIVE_TEMP = 10.0

#: the ``format`` field of our JSON config (bumped if the meaning of a field changes)
CONFIG_FORMAT = "corr-adapter/1"


@dataclass
class AdapterConfig:
    """What an :class:`~corr.adapters.AggregationNetwork` is built from (JSON-serialisable).

    Args:
        feature_dims: channels of each input group, in the order they are concatenated in the
            adapter's input (see :func:`corr.adapters.adapter_input`). One bottleneck per group.
        group_names: a name per group (e.g. ``("sd8", "sd5", "sd2", "dino")``), recorded so an
            input can be checked against it; ``None`` = unnamed.
        projection_dim: output channels ``P`` (bottleneck width ``P // 4``).
        num_norm_groups: GroupNorm groups; ``P`` and ``P // 4`` must be divisible by it.
        kernel_size: kernel sizes of the three convolutions of a bottleneck (odd).
        feat_map_dropout: element-wise dropout on the input in training mode.
        logit_scale_init / contrastive_temp: initial ``logit_scale`` (log of the inverse CLIP
            temperature) and ``self_logit_scale = log(contrastive_temp)``.
        grid: the output grid ``g`` the input is resampled to; ``None`` (default) = the finest
            grid of the last extractor's maps (60 for SD + DINOv2 at 960 / 840 px, the
            reference's ``NUM_PATCHES``).
        recipe: free-form record of how it was trained (data, switches, steps, metric).
        notes: free text.
    """

    feature_dims: tuple[int, ...] = REFERENCE_FEATURE_DIMS
    group_names: tuple[str, ...] | None = REFERENCE_GROUP_NAMES
    projection_dim: int = REFERENCE_PROJECTION_DIM
    num_norm_groups: int = REFERENCE_NUM_NORM_GROUPS
    kernel_size: tuple[int, int, int] = REFERENCE_KERNEL_SIZE
    feat_map_dropout: float = REFERENCE_FEAT_MAP_DROPOUT
    logit_scale_init: float = REFERENCE_LOGIT_SCALE_INIT
    contrastive_temp: float = REFERENCE_CONTRASTIVE_TEMP
    grid: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        self.feature_dims = tuple(_as_int(d, "feature_dims entry") for d in self.feature_dims)
        if not self.feature_dims or any(d <= 0 for d in self.feature_dims):
            raise ValueError(
                f"AdapterConfig.feature_dims must be one or more positive channel counts, "
                f"got {list(self.feature_dims)}"
            )
        if self.group_names is not None:
            self.group_names = tuple(str(n) for n in self.group_names)
            if len(self.group_names) != len(self.feature_dims):
                raise ValueError(
                    f"AdapterConfig.group_names has {len(self.group_names)} names for "
                    f"{len(self.feature_dims)} feature_dims; give one name per group or None"
                )
        p = self.projection_dim = _as_int(self.projection_dim, "projection_dim")
        n = self.num_norm_groups = _as_int(self.num_norm_groups, "num_norm_groups")
        if n <= 0 or p <= 0 or p % 4 or p % n or (p // 4) % n:
            raise ValueError(
                f"AdapterConfig: projection_dim {p} must be a positive multiple of 4 with both "
                f"projection_dim and projection_dim // 4 divisible by num_norm_groups {n} "
                f"(GroupNorm), e.g. projection_dim = {4 * max(n, 1) * 6}"
            )
        ks = tuple(_as_int(k, "kernel_size entry") for k in self.kernel_size)
        if len(ks) != 3 or any(k <= 0 or k % 2 == 0 for k in ks):
            raise ValueError(f"AdapterConfig.kernel_size must be three odd sizes, got {list(ks)}")
        self.kernel_size = ks  # type: ignore[assignment]
        if not 0.0 <= float(self.feat_map_dropout) < 1.0:
            raise ValueError(
                f"AdapterConfig.feat_map_dropout must lie in [0, 1), got {self.feat_map_dropout}"
            )
        self.feat_map_dropout = float(self.feat_map_dropout)
        if self.grid is not None:
            self.grid = _as_int(self.grid, "grid")
            if self.grid <= 0:
                raise ValueError(f"AdapterConfig.grid must be positive or None, got {self.grid}")
        if not isinstance(self.recipe, dict):
            raise ValueError(f"AdapterConfig.recipe must be a dict, got {type(self.recipe)}")

    @property
    def in_channels(self) -> int:
        """Total input channels ``sum(feature_dims)``."""
        return sum(self.feature_dims)

    def describe_groups(self) -> str:
        """``"sd8 640 + sd5 1280 + ..."`` (for error messages)."""
        names = self.group_names or tuple(f"group{i}" for i in range(len(self.feature_dims)))
        return " + ".join(f"{n} {d}" for n, d in zip(names, self.feature_dims, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, with ``format``."""
        d = asdict(self)
        d["feature_dims"] = list(self.feature_dims)
        d["group_names"] = None if self.group_names is None else list(self.group_names)
        d["kernel_size"] = list(self.kernel_size)
        return {"format": CONFIG_FORMAT, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "adapter config") -> AdapterConfig:
        """Inverse of :meth:`to_dict`; unknown keys or another ``format`` raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise ValueError(f"{source}: format {fmt!r} is not {CONFIG_FORMAT!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def for_groups(cls, groups: Sequence[tuple[str, int]], **kwargs: Any) -> AdapterConfig:
        """A config for named groups ``[(name, channels), ...]`` (e.g. :func:`adapter_groups`)."""
        names = tuple(n for n, _ in groups)
        dims = tuple(int(c) for _, c in groups)
        return cls(feature_dims=dims, group_names=names, **kwargs)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"AdapterConfig: {what} must be an integer, got {value!r}")
    return int(value)
