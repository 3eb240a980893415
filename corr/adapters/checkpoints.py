"""Adapter checkpoints: GeoAware-SC's released ``.PTH`` files, and ours (safetensors + JSON).

GeoAware-SC (Junyi42/GeoAware-SC @99fd6b6) saves ``torch.save(aggre_net.state_dict(), ...)``
(``pck_train.py:train``: ``best.pth`` / ``last.pth``; released as ``results_spair/best_856.PTH``
and ``results_ap10k/pretrained_ckpt/last.PTH``): a plain state dict with the keys of
:class:`~corr.adapters.AggregationNetwork` (ours uses the same names, so no key mapping). It
loads one with ``AggregationNetwork.load_pretrained_weights`` (``model_utils/
projection_network.py``), whose rule :func:`apply_reference_weights` reproduces.

Ours: ``save_adapter`` writes ``NAME.safetensors`` (the state dict) and ``NAME.json`` (the
:class:`~corr.adapters.AdapterConfig`) side by side; ``load_adapter`` reads either format.
Pickles are read only with ``torch.load(weights_only=True)`` (through :mod:`corr.weights`);
one that would run code is refused with :class:`corr.weights.UnsafeWeightsError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..weights import WeightsFileError, load_state_dict
from .aggregation import AggregationNetwork
from .config import AdapterConfig

__all__ = [
    "open_adapter",
    "trained_features",
    "apply_reference_weights",
    "load_reference_checkpoint",
    "save_adapter",
    "load_adapter",
    "adapter_paths",
    "read_config",
    "DEFAULT_NAME",
]

log = logging.getLogger(__name__)

#: file stem used when ``save_adapter`` / ``load_adapter`` are given a folder
DEFAULT_NAME = "adapter"
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
#: the reference's hard-coded count of mixing weights copied from a checkpoint
REFERENCE_COPIED_MIXING_WEIGHTS = 4


def apply_reference_weights(
    module: AggregationNetwork, pretrained: Mapping[str, torch.Tensor], source: str = "state dict"
) -> list[str]:
    """Load ``pretrained`` into ``module`` by ``AggregationNetwork.load_pretrained_weights``'s rule.

    The rule, as written in the reference:

    - ``mixing_weights``: the first four are copied (``custom[:4] = pretrained[:4]``); if the
      two shapes differ, the fifth is also set to 0 (a 5-group network loading a 4-group
      checkpoint gives the new group ``softmax`` weight ``e^0``). With equal shapes of more than
      four, the entries past the fourth keep the module's current values (the reference's
      quirk, reproduced);
    - every other key present in both is copied; keys only in the module keep their values,
      keys only in ``pretrained`` are ignored (``load_state_dict(strict=False)``).

    Returns the module keys not found in ``pretrained`` (kept as they were; also logged).
    Where the reference would crash (no ``mixing_weights``; a count the rule cannot map; a
    shape mismatch of another key) a ValueError names ``source`` and the keys.
    """
    custom = module.state_dict()  # shares storage with the parameters, as in the reference
    if "mixing_weights" not in pretrained:
        raise ValueError(
            f"{source}: no 'mixing_weights' key, so not a GeoAware-SC AggregationNetwork state "
            f"dict (keys: {sorted(pretrained)[:6]}...)"
        )
    cm = custom["mixing_weights"]
    pm = pretrained["mixing_weights"].detach().to(device=cm.device, dtype=cm.dtype)
    k = REFERENCE_COPIED_MIXING_WEIGHTS
    try:
        cm[:k] = pm[:k]
        if cm.shape != pm.shape:
            cm[k] = torch.zeros_like(cm[k])
    except (RuntimeError, IndexError) as err:
        raise ValueError(
            f"{source}: GeoAware-SC's loading rule cannot map {pm.numel()} mixing weights onto "
            f"an adapter of {cm.numel()} groups ({err}); build the adapter with the checkpoint's "
            "feature groups"
        ) from None
    matching = {
        key: v for key, v in pretrained.items() if key in custom and key != "mixing_weights"
    }
    bad = [
        f"{key} {tuple(v.shape)} vs {tuple(custom[key].shape)}"
        for key, v in matching.items()
        if tuple(v.shape) != tuple(custom[key].shape)
    ]
    if bad:
        raise ValueError(
            f"{source}: shapes differ between checkpoint and adapter ({'; '.join(bad[:4])}"
            f"{'; ...' if len(bad) > 4 else ''}); the adapter config (feature_dims, "
            "projection_dim) does not match the checkpoint"
        )
    custom.update(matching)
    module.load_state_dict(custom, strict=False)
    kept = sorted(key for key in custom if key not in pretrained)
    if kept:
        log.warning(
            "%s: %d adapter tensors not in the checkpoint keep their initial values: %s",
            source,
            len(kept),
            ", ".join(kept[:8]) + (", ..." if len(kept) > 8 else ""),
        )
    return kept


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found: {path}" + (" (a folder)" if path.is_dir() else "")
        )


def load_reference_checkpoint(
    path: str | os.PathLike, config: AdapterConfig | None = None
) -> AggregationNetwork:
    """A GeoAware-SC ``.PTH`` (``best_856.PTH``, AP-10K ``last.PTH``) -> an adapter in eval mode.

    ``config`` defaults to the reference's (:class:`AdapterConfig`: SD s3/s4/s5 + DINOv2-B,
    768-d). The weights are loaded by :func:`apply_reference_weights` (the reference's
    ``load_pretrained_weights``). The file is read with ``torch.load(weights_only=True)``; a
    pickle that would run code raises :class:`corr.weights.UnsafeWeightsError`.
    """
    path = Path(path)
    if path.suffix.lower() not in _PICKLE_SUFFIXES:
        raise WeightsFileError(
            f"{path}: a GeoAware-SC checkpoint is a .pth/.PTH state dict; for our .safetensors "
            "adapters use corr.adapters.load_adapter"
        )
    _require_file(path, "GeoAware-SC checkpoint")
    sd = load_state_dict(path)  # weights_only; .PTH included
    module = AggregationNetwork(config if config is not None else AdapterConfig())
    apply_reference_weights(module, sd, source=str(path))
    return module.eval()


def adapter_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights.safetensors, config.json)`` for a folder (``adapter.*`` inside it), a
    ``.safetensors`` file or a ``.json`` file (the other one beside it)."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        stem = path.with_suffix("")
    elif path.suffix == "":
        stem = path / DEFAULT_NAME
    else:
        raise ValueError(
            f"{path}: an adapter is saved as NAME.safetensors + NAME.json; give a folder, a "
            ".safetensors or a .json path"
        )
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_adapter(module: AggregationNetwork, path: str | os.PathLike) -> Path:
    """Write ``module``'s state dict as safetensors and its config as JSON beside it.

    ``path`` is a folder (created; files ``adapter.safetensors`` / ``adapter.json``) or a
    ``.safetensors`` path (the ``.json`` gets the same stem). Returns the safetensors path.
    """
    from safetensors.torch import save_file

    config = getattr(module, "config", None)
    if not isinstance(config, AdapterConfig):
        raise TypeError(f"save_adapter needs an AggregationNetwork, got {type(module).__name__}")
    weights, cfg = adapter_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(weights), metadata={"format": "pt", "config": cfg.name})
    cfg.write_text(config.to_json(), encoding="utf-8")
    return weights


def read_config(path: str | os.PathLike) -> AdapterConfig:
    """The :class:`AdapterConfig` of a saved adapter (its ``.json``)."""
    _, cfg = adapter_paths(path)
    if not cfg.is_file():
        raise FileNotFoundError(
            f"adapter config not found: {cfg} (save_adapter writes it beside the .safetensors; "
            "pass config= to load_adapter if you have the weights alone)"
        )
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg}: malformed JSON: {err}") from None
    return AdapterConfig.from_dict(data, source=str(cfg))


def load_adapter(
    path: str | os.PathLike, config: AdapterConfig | None = None
) -> AggregationNetwork:
    """Load an adapter in eval mode: ours (folder, ``.safetensors`` or ``.json`` path) or a
    GeoAware-SC ``.pth``/``.PTH`` (then ``config`` defaults to the reference's; see
    :func:`load_reference_checkpoint`).

    Ours are loaded strictly: the config comes from the JSON beside the weights (or
    ``config``), and every key must match; a mismatch raises ValueError naming the file.
    """
    p = Path(path)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        return load_reference_checkpoint(p, config)
    weights, _ = adapter_paths(p)
    _require_file(weights, "adapter weights")
    cfg = config if config is not None else read_config(p)
    sd = load_state_dict(weights)
    module = AggregationNetwork(cfg)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or extra or shapes:
        raise ValueError(
            f"{weights}: does not fit its config ({cfg.describe_groups()} -> "
            f"{cfg.projection_dim}): missing {missing[:4]}, unexpected {extra[:4]}, "
            f"shapes {shapes[:4]}; was it saved with another config?"
        )
    module.load_state_dict(sd, strict=True)
    return module.eval()


#: GeoAware-SC's evaluation of a trained adapter (configs/eval_spair.yaml: SOFT_EVAL true,
#: argparse SOFT_EVAL_WINDOW 7) when an adapter's recipe does not say otherwise
REFERENCE_EVALUATION = {"soft_eval": True, "soft_eval_window": 7}
#: the features GeoAware-SC's adapters were trained on (preprocess_map.py): SD 1.5 + DINOv2-B
#: under the geoaware protocol, for a recipe that does not name its own
REFERENCE_FEATURES = {"extractors": ["sd15", "dinov2_vitb14"], "protocol": "geoaware"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_adapter(spec: str | os.PathLike | torch.nn.Module) -> tuple[AggregationNetwork, dict]:
    """An adapter for :class:`corr.Matcher`, and the record a run keeps of it.

    ``spec``: a registered name (``python -m corr.weights list``: ``geoaware-spair``,
    ``geoaware-ap10k``, resolved through :func:`corr.weights.resolve`, never random weights), a
    path (ours: folder, ``.safetensors`` or ``.json``; GeoAware-SC's ``.pth``/``.PTH``) or an
    :class:`AggregationNetwork`. Returns the module (eval mode) and ``{"name", "path",
    "sha256", "recipe", "evaluation", "features"}``: ``evaluation`` holds ``soft_eval`` (window
    soft-argmax or nearest neighbour) and ``soft_eval_window``; ``features`` the
    ``extractors`` and ``protocol`` it was trained on; each from the adapter's recipe, or else
    GeoAware-SC's (soft, radius 7; SD 1.5 + DINOv2-B under the geoaware protocol).
    """
    if isinstance(spec, torch.nn.Module):
        if not isinstance(spec, AggregationNetwork):
            raise TypeError(
                f"adapter must be an AggregationNetwork, a path or a registered name, got "
                f"{type(spec).__name__}"
            )
        module, name, path, digest = spec, "module", None, None
    else:
        from ..weights import KNOWN_WEIGHTS, resolve

        name = str(spec)
        if name in KNOWN_WEIGHTS:
            path = resolve(name).path
        else:
            path = Path(spec)
            if not path.exists():
                raise FileNotFoundError(
                    f"adapter {name!r}: no such file or folder, and not a registered name "
                    "(python -m corr.weights list shows the registered adapters)"
                )
        module = load_adapter(path)
        weights = path if path.suffix.lower() in _PICKLE_SUFFIXES else adapter_paths(path)[0]
        digest = _sha256(weights)
    recipe = dict(module.config.recipe)
    evaluation = {k: recipe.get(k, v) for k, v in REFERENCE_EVALUATION.items()}
    features = {k: recipe.get(k, v) for k, v in REFERENCE_FEATURES.items()}
    record = {
        "name": name,
        "path": None if path is None else str(path),
        "sha256": digest,
        "recipe": recipe,
        "evaluation": evaluation,
        "features": features,
    }
    return module.eval(), record


def trained_features(spec: str | os.PathLike | torch.nn.Module) -> dict[str, Any]:
    """``{"extractors", "protocol"}`` an adapter was trained on, without loading its weights:
    from our adapter's JSON, or GeoAware-SC's (a registered name or a ``.PTH``: SD 1.5 +
    DINOv2-B under the geoaware protocol). For a command to check and build what it needs."""
    if isinstance(spec, torch.nn.Module):
        recipe = dict(getattr(spec, "config", AdapterConfig()).recipe)
    else:
        from ..weights import KNOWN_WEIGHTS

        path = Path(spec)
        ours = str(spec) not in KNOWN_WEIGHTS and path.suffix.lower() not in _PICKLE_SUFFIXES
        recipe = dict(read_config(path).recipe) if ours else {}
    return {k: recipe.get(k, v) for k, v in REFERENCE_FEATURES.items()}
