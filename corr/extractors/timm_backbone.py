"""Any timm backbone as an extractor, in one line.

``create_extractor("timm/convnext_base.fb_in22k", out_indices=(1, 2))`` (or
:meth:`ModuleExtractor.from_timm`) builds the model with ``features_only=True``, so it returns
the feature maps of the stages in ``out_indices``; the normalisation (``mean``/``std``) and the
default input size come from the model's ``pretrained_cfg``.

Names: everything after ``timm/`` is timm's own model name, including its Hugging Face form
``hf-hub:org/repo``; a bare ``hf-hub:...`` name is a timm name too. (``"package.module:factory"``
specs, which also contain a colon, never start with ``timm/`` or ``hf-hub:``.)

Weights: ``pretrained=True`` lets timm fetch them (Hugging Face hub or its cache), or reads the
local ``pretrained_file`` (a ``.safetensors`` or ``.pth`` state dict; timm reads ``.pth`` with
``torch.load(weights_only=True)``). Missing weights raise
:class:`~corr.weights.WeightsNotFoundError`; random weights are never substituted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._compat import ensure_torchvision_importable
from ..weights import WeightsNotFoundError
from .base import ModuleExtractor

PREFIX = "timm/"


def is_timm_name(name: str) -> bool:
    """True for ``"timm/<model>"`` and ``"hf-hub:<org>/<repo>"`` extractor names."""
    return name.startswith((PREFIX, "hf-hub:"))


def timm_model_name(name: str) -> str:
    """``"timm/convnext_base.fb_in22k"`` -> ``"convnext_base.fb_in22k"``; ``hf-hub:`` kept."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


def timm_extractor(
    name: str,
    pretrained: bool = True,
    *,
    out_indices: Sequence[int] = (1, 2),
    input_size: int | None = None,
    pretrained_file: str | Path | None = None,
    reduce: bool = False,
    group: str | None = None,
    resample: str = "lanczos",
) -> ModuleExtractor:
    """A :class:`ModuleExtractor` around ``timm.create_model(name, features_only=True)``.

    ``out_indices``: the stages whose maps are returned (``feat0``, ``feat1``, ... in that
    order; the last one sets the grid when it is the last extractor). ``input_size``: the
    letterbox side (default: the ``pretrained_cfg``'s). ``reduce``: co-PCA these maps.
    """
    ensure_torchvision_importable()
    import timm

    model_name = timm_model_name(name)
    kwargs: dict = {"features_only": True, "out_indices": tuple(int(i) for i in out_indices)}
    if pretrained and pretrained_file is None:
        pretrained_file = _cached_when_offline(timm, model_name, name)
    if pretrained and pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise WeightsNotFoundError(f"pretrained_file {path}: no such file")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    try:
        model = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise KeyError(
                f"extractor {name!r}: timm has no model {model_name!r} "
                "(see timm.list_models(pretrained=True))"
            ) from None
        raise
    except OSError as err:  # hub unreachable, file not in the cache, ...
        raise WeightsNotFoundError(
            f"extractor {name!r}: timm could not get the weights of {model_name!r} ({err}). "
            "Download them where the Hugging Face hub is reachable (they go to the HF cache, "
            "HF_HUB_CACHE), or pass pretrained_file=PATH to a local .safetensors/.pth file. "
            "Random weights are never used in their place."
        ) from None
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if input_size is None:
        size = cfg.get("input_size") or (3, 224, 224)
        input_size = int(size[-1])
    weights_id = f"timm:{model_name}" if pretrained else None  # None: a fingerprint of the values
    if pretrained and pretrained_file is not None:
        weights_id = None  # a local file: identify it by its values
    return ModuleExtractor(
        model,
        input_size=input_size,
        name=model_name,
        group=group,
        reduce=reduce,
        mean=cfg.get("mean"),
        std=cfg.get("std"),
        weights_id=weights_id,
        resample=resample,
    )


def _cached_when_offline(timm, model_name: str, name: str) -> Path | None:
    """When downloads are off or the hub is unreachable: the weights file in the Hugging Face
    cache (so timm does not retry the network for a minute), or a clear error. ``None`` when
    the hub can be reached (timm then downloads or uses its cache itself)."""
    from ..weights import hub_unreachable_reason, offline_reason

    reason = offline_reason() or hub_unreachable_reason()
    if reason is None:
        return None
    if model_name.startswith("hf-hub:"):
        repo = model_name[len("hf-hub:") :]
    else:
        cfg = timm.create_model(model_name, pretrained=False).pretrained_cfg or {}
        repo = cfg.get("hf_hub_id")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return Path(found)
    raise WeightsNotFoundError(
        f"extractor {name!r}: the weights of {model_name!r} are not in the Hugging Face cache "
        f"and cannot be downloaded: {reason}. Download them where the hub is reachable "
        f"(repository {repo or '?'}), or pass pretrained_file=PATH to a local "
        ".safetensors/.pth file. Random weights are never used in their place."
    )
