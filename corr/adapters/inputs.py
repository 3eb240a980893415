"""The adapter's input (from our extractor maps) and what is done to its output.

What GeoAware-SC does (Junyi42/GeoAware-SC @99fd6b6), and where:

- **Features** (``preprocess_map.py:process_and_save_features``): SD 1.5 at 960 px
  (``real_size``), decoder features ``s3`` (640 x 60 x 60), ``s4`` (1280 x 30 x 30), ``s5``
  (1280 x 15 x 15) (``s2`` deleted), and DINOv2-B layer-11 tokens at 840 px reshaped to
  768 x 60 x 60. They are saved raw: no PCA, no normalisation. In our extractors these are
  ``sd8``, ``sd5``, ``sd2`` (``corr/extractors/sd.py``) and ``dino``.
- **Input** (``pck_train.py:prepare_feature_paths_and_load``):
  ``cat([s3, up(s4), up(s5), dino], dim=1)`` where ``up`` is
  ``F.interpolate(size=(60, 60), mode="bilinear", align_corners=False)`` in one step (s5 goes
  15 -> 60 directly). Nothing is normalised before the network. ``NUM_PATCHES = 60``
  (``pck_train.py:main``).
- **Network**: ``aggre_net(desc_gathered)`` -> ``(1, 768, 60, 60)``, reshaped to
  ``(1, 1, 3600, 768)`` (cell ``y * 60 + x``).
- **Output** (``pck_train.py:get_patch_descriptors`` -> ``normalize_feats``): with the trained
  network (``DUMMY_NET`` false) each cell is divided by ``(||d||_2 + 1e-10)``; the SD/DINO split
  normalisation of ``normalize_feats`` applies only to ``DUMMY_NET`` (the zero-shot path, which
  is :func:`corr.fusion.build_descriptors_many` with ``mode="concat"``). The README's demo
  (``get_processed_features``) uses ``1e-8``; training and evaluation use ``1e-10``.

:func:`adapter_input` builds that input from the per-extractor map dicts a
:class:`corr.Matcher` holds (``ImageFeatures.maps``: one ``{name: (C, h, w)}`` per extractor),
generalised to any extractors: each extractor's maps, finest grid first (ties by name), each
upsampled in one bilinear step with :func:`corr.fusion.stack_pyramid` (``one_step=True``, the
same function the zero-shot ``concat`` fusion uses), extractors in the given order. Each map is
one group of the adapter (:func:`adapter_groups`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..fusion import stack_pyramid
from .config import AdapterConfig

__all__ = [
    "adapter_input",
    "adapter_groups",
    "normalize_descriptor",
    "adapter_descriptor",
    "REFERENCE_NORM_EPS",
]

#: pck_train.py:normalize_feats ``epsilon=1e-10``, added to the norm (not a clamp)
REFERENCE_NORM_EPS = 1e-10

FeatureMaps = Mapping[str, torch.Tensor]


def _ordered_names(maps: FeatureMaps) -> list[str]:
    """Map names finest grid first, ties by name: ``sd8, sd5, sd2`` for SD (s3, s4, s5)."""
    return sorted(sorted(maps), key=lambda n: -int(maps[n].shape[-1]))


def _check(maps_per_extractor: Sequence[FeatureMaps]) -> None:
    if isinstance(maps_per_extractor, Mapping):
        raise TypeError(
            "adapter_input takes a sequence of per-extractor map dicts (ImageFeatures.maps), "
            "not one dict; wrap it: [maps]"
        )
    if not maps_per_extractor or any(not m for m in maps_per_extractor):
        raise ValueError("adapter_input needs at least one extractor with at least one map")
    for e, maps in enumerate(maps_per_extractor):
        for name, m in maps.items():
            if m.ndim != 3:
                raise ValueError(
                    f"extractor {e}'s map {name!r} must be (C, h, w), got {tuple(m.shape)}"
                )


def adapter_groups(maps_per_extractor: Sequence[FeatureMaps]) -> list[tuple[str, int]]:
    """``[(map name, channels), ...]`` in the order :func:`adapter_input` concatenates them.

    For SD + DINOv2 this is ``[("sd8", 640), ("sd5", 1280), ("sd2", 1280), ("dino", 768)]``,
    GeoAware-SC's ``feature_dims``. Feed it to :meth:`AdapterConfig.for_groups`.
    """
    _check(maps_per_extractor)
    return [
        (name, int(maps[name].shape[0]))
        for maps in maps_per_extractor
        for name in _ordered_names(maps)
    ]


def adapter_input(
    maps_per_extractor: Sequence[FeatureMaps],
    grid: int | None = None,
    config: AdapterConfig | None = None,
) -> torch.Tensor:
    """One image's extractor maps -> the adapter input ``(sum C, grid, grid)``, float32.

    ``grid``: the output grid; default ``config.grid`` if a config is given, else the finest
    map of the *last* extractor (the :class:`corr.Matcher` rule; 60 for SD + DINOv2). Every map
    not on that grid is resized to it with one bilinear step (``align_corners=False``).
    With ``config``, the groups are checked against its ``feature_dims`` / ``group_names`` and
    a mismatch raises ValueError naming both.
    """
    _check(maps_per_extractor)
    if grid is None and config is not None:
        grid = config.grid
    if grid is None:
        grid = int(max(m.shape[-1] for m in maps_per_extractor[-1].values()))
    if config is not None:
        groups = adapter_groups(maps_per_extractor)
        names = tuple(n for n, _ in groups)
        dims = tuple(c for _, c in groups)
        named_ok = config.group_names is None or config.group_names == names
        if dims != tuple(config.feature_dims) or not named_ok:
            got = " + ".join(f"{n} {c}" for n, c in groups)
            raise ValueError(
                f"the maps give groups {got}, but the adapter was built for "
                f"{config.describe_groups()}; use the extractors (and layers) it was trained on"
            )
    parts = [
        stack_pyramid([maps[n].float() for n in _ordered_names(maps)], grid, one_step=True)
        for maps in maps_per_extractor
    ]
    return torch.cat(parts, dim=0)


def normalize_descriptor(
    desc: torch.Tensor, eps: float = REFERENCE_NORM_EPS, dim: int = -3
) -> torch.Tensor:
    """Each cell divided by ``(||d||_2 + eps)`` along the channel axis ``dim`` (default: the
    ``C`` of ``(C, g, g)`` / ``(B, C, g, g)``), as ``pck_train.py:normalize_feats``."""
    return desc / (torch.linalg.norm(desc, dim=dim, keepdim=True) + eps)


def adapter_descriptor(
    adapter: torch.nn.Module, maps_per_extractor: Sequence[FeatureMaps]
) -> torch.Tensor:
    """Extractor maps -> the adapter's unit descriptor ``(P, g, g)`` (the reference's
    evaluation path: input, network, per-cell L2 normalisation). Runs in the adapter's current
    mode (call ``.eval()`` for inference: dropout is active in training mode)."""
    config = getattr(adapter, "config", None)
    param = next(adapter.parameters(), None)
    x = adapter_input(maps_per_extractor, config=config)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    return normalize_descriptor(adapter(x))
