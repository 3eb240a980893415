"""Evaluation protocols: every knob of a reference implementation, set by one name.

``corr`` is our default; ``sd-dino``, ``geoaware`` and ``dift`` reproduce Junyi42/sd-dino @b85df18,
Junyi42/GeoAware-SC @99fd6b6 (zero-shot) and Tsingularity/dift @9421eb2 (SPair evaluation). docs/protocol.md lists each knob, its value under each
protocol and why ``corr`` differs. A protocol is data: :data:`PROTOCOLS` maps a name to a
:class:`Protocol`, and :func:`get_protocol` looks one up.

Knob groups:

- ``matcher``: keyword arguments of :class:`corr.Matcher` (fusion, matching, padding, the
  arithmetic of keypoint -> cell, the cell centre, the mirror convention and the flip decision);
- ``sd`` / ``dino``: options given to the SD and DINOv2 extractor factories (``sd15``, ``sd21``,
  ``sd``, ``dinov2_*``; tiny test models and custom extractors keep their own). CleanDIFT
  (``sd15-cleandift``, ``sd21-cleandift``) gets the ``sd`` knobs with CleanDIFT's own settings
  over them (:data:`CLEANDIFT_KNOBS`); DINOv3 (``dinov3_*``, patch 16) gets the DINOv2 token
  grid of the protocol (840 px / 14 = 60 -> 960 px);
- ``resample``: the PIL filter of every extractor's letterbox resize;
- ``eval``: how the evaluation reads the keypoint tables and which pairs it takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "get_protocol",
    "MATCHER_KNOBS",
    "UNSET",
    "resolve_knobs",
    "CLEANDIFT_KNOBS",
    "extractor_knobs",
]

#: Matcher keyword arguments that a protocol sets (and a user may override one by one).
MATCHER_KNOBS = (
    "fuse",
    "method",
    "window",
    "temperature",
    "window_mode",
    "pca_dim",
    "pca_method",
    "fusion",
    "exclude_padding",
    "arithmetic",
    "centre_shift",
    "mirror",
    "flip_distance",
    "resize",
)


@dataclass(frozen=True)
class Protocol:
    """One named set of knobs (see the module docstring and docs/protocol.md)."""

    name: str
    description: str
    matcher: dict[str, Any]
    sd: dict[str, Any] = field(default_factory=dict)
    dino: dict[str, Any] = field(default_factory=dict)
    resample: str = "lanczos"
    eval: dict[str, Any] = field(default_factory=dict)
    extractors: tuple[str, ...] = ("sd15", "dinov2_vitb14")

    def as_dict(self) -> dict[str, Any]:
        """Every knob, as JSON data (recorded in a run's config and results)."""
        return {
            "name": self.name,
            "matcher": dict(self.matcher),
            "sd": dict(self.sd),
            "dino": dict(self.dino),
            "resample": self.resample,
            "eval": dict(self.eval),
            "extractors": list(self.extractors),
        }


_CORR = Protocol(
    name="corr",
    description="our default: single 960 px SD pass, exact co-PCA, window soft-argmax that "
    "excludes cells outside the window, no matches into padding, exact keypoint arithmetic",
    matcher={
        "fuse": 0.5,
        "method": "softargmax",
        "window": 5,
        "temperature": 0.02,
        "window_mode": "exclude",
        "pca_dim": 256,
        "pca_method": "eigh",
        "fusion": "copca",
        "exclude_padding": True,
        "arithmetic": "exact",
        "centre_shift": 0.0,
        "mirror": "pixel",
        "flip_distance": "corr",
        "resize": "letterbox",
    },
    sd={"timestep": 100, "tiled": False, "freeu": False, "seed": 42, "input_size": 960},
    dino={"input_size": 840},
    eval={"tables": "ids", "pair_sampling": "all", "pck": "<"},
)

_SD_DINO = Protocol(
    name="sd-dino",
    description="Junyi42/sd-dino @b85df18 (pck_spair_pascal.py defaults, all test pairs): co-PCA "
    "256 per SD layer with torch.pca_lowrank, nearest neighbour, cell centre 14p + 6.5, "
    "four tiled 512 px SD passes at t = 100, matches into padding allowed",
    matcher={
        "fuse": 0.5,
        "method": "nn",
        "window": 5,
        "temperature": 0.02,
        "window_mode": "zero",
        "pca_dim": 256,
        "pca_method": "lowrank",
        "fusion": "copca",
        "exclude_padding": False,
        "arithmetic": "float32",
        "centre_shift": -0.5,
        # sd-dino has no pose alignment; --flip uses GeoAware-SC's rules
        "mirror": "letterbox",
        "flip_distance": "reference",
        "resize": "letterbox",
    },
    sd={"timestep": 100, "tiled": True, "freeu": False, "seed": 42, "input_size": 960},
    dino={"input_size": 840},
    eval={"tables": "geoaware", "pair_sampling": "all", "pck": "<"},
)

_GEOAWARE = Protocol(
    name="geoaware",
    description="Junyi42/GeoAware-SC @99fd6b6, zero-shot (configs/eval_zero_shot_spair.yaml): "
    "raw [L8|L5|L2|DINO] concatenation with one-step upsampling, window soft-argmax (radius 5, "
    "beta 0.02) with zeroed similarities outside the window, tiled SD at t = 50 with GeoAware's "
    "FreeU, reference flip rules and keypoint-table renumbering",
    matcher={
        "fuse": 0.5,
        "method": "softargmax",
        "window": 5,
        "temperature": 0.02,
        "window_mode": "zero",
        "pca_dim": None,
        "pca_method": "eigh",
        "fusion": "concat",
        "exclude_padding": False,
        "arithmetic": "float32",
        "centre_shift": 0.0,
        "mirror": "letterbox",
        "flip_distance": "reference",
        "resize": "letterbox",
    },
    sd={"timestep": 50, "tiled": True, "freeu": "geoaware", "seed": 42, "input_size": 960},
    dino={"input_size": 840},
    eval={"tables": "geoaware", "pair_sampling": "all", "pck": "<"},
)

_DIFT = Protocol(
    name="dift",
    description="Tsingularity/dift @9421eb2 (eval_spair.py defaults): SD 2.1 alone, image "
    "stretched to 768 x 768, output of up-block 1 (layer 6) at t = 261, 8 noise draws with "
    "posterior samples averaged, prompt 'a photo of a {category}', features upsampled to each "
    "image's pixels and matched pixel to pixel, PCK with <=",
    matcher={
        "fuse": 1.0,
        "method": "pixel",
        "window": 5,
        "temperature": 0.02,
        "window_mode": "exclude",
        "pca_dim": None,
        "pca_method": "eigh",
        "fusion": "copca",
        "exclude_padding": False,
        "arithmetic": "exact",
        "centre_shift": 0.0,
        "mirror": "pixel",
        "flip_distance": "corr",
        "resize": "stretch",
    },
    sd={
        "timestep": 261,
        "ensemble": 8,
        "layers": (6,),
        "input_size": 768,
        "prompt": "a photo of a {category}",
        "latent": "sample",
        "tiled": False,
        "freeu": False,
        "seed": 42,
    },
    resample="bicubic",
    eval={"tables": "ids", "pair_sampling": "all", "pck": "<="},
    extractors=("sd21",),
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (_CORR, _SD_DINO, _GEOAWARE, _DIFT)}


def get_protocol(name: str | Protocol) -> Protocol:
    """The protocol called ``name`` (a :class:`Protocol` passes through)."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


#: CleanDIFT's extractors, which take a protocol's ``sd`` knobs with :data:`CLEANDIFT_KNOBS` over them
CLEANDIFT_SPECS = ("sd15-cleandift", "sd21-cleandift")

#: CleanDIFT's own extraction under each protocol, put over the protocol's ``sd`` knobs: its
#: UNet is conditioned on t = 261 and reads the clean latent (no noise, so no noise ensemble),
#: with a caption's CLIP embedding. ``geoaware`` is CleanDIFT's GeoAware-SC evaluation
#: (CompVis/cleandift @6bc34e16, branch geoaware-sc-eval: FreeU commented out, caption
#: "A photo of a {category}", the 69.99 SPair row); ``dift`` keeps DIFT's prompt and posterior
#: samples, with one draw; ``corr`` and ``sd-dino`` use the empty caption, as CleanDIFT's
#: ``get_features`` does without one (prompt " " is the CLIP embedding of the empty caption).
CLEANDIFT_KNOBS: dict[str, dict[str, Any]] = {
    "corr": {"timestep": 261, "prompt": " "},
    "sd-dino": {"timestep": 261, "prompt": " "},
    "geoaware": {"timestep": 261, "freeu": False, "prompt": "A photo of a {category}"},
    "dift": {"timestep": 261, "ensemble": 1},
}
_CLEANDIFT_DEFAULT = {"timestep": 261, "freeu": False}


def extractor_knobs(protocol: Protocol, spec: str) -> dict[str, Any]:
    """The factory options a protocol gives the extractor registered as ``spec``."""
    if spec in ("sd15", "sd21", "sd"):
        return dict(protocol.sd)
    if spec in CLEANDIFT_SPECS:
        return {**protocol.sd, **CLEANDIFT_KNOBS.get(protocol.name, _CLEANDIFT_DEFAULT)}
    if spec.startswith("dinov2_"):
        return dict(protocol.dino)
    if spec.startswith("dinov3_"):  # patch 16: the same token grid as DINOv2's (patch 14)
        knobs = {k: v for k, v in protocol.dino.items() if k != "input_size"}
        if "input_size" in protocol.dino:
            knobs["input_size"] = int(protocol.dino["input_size"]) // 14 * 16
        return knobs
    return {}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "not given" for a knob whose ``None`` is a real value (``pca_dim=None``: no PCA)
UNSET: Any = _Unset()


def resolve_knobs(
    protocol: Protocol, given: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The matcher knobs of ``protocol`` with the ones ``given`` explicitly put over them.

    A knob is not given when its value is ``None`` (or :data:`UNSET` for ``pca_dim``, where
    ``None`` means no PCA). Returns every knob's value and the overrides: the given knobs
    whose value differs from the protocol's (a run records them)."""
    unknown = sorted(set(given) - set(MATCHER_KNOBS))
    if unknown:
        raise ValueError(f"unknown matcher knobs {unknown}; known: {', '.join(MATCHER_KNOBS)}")
    knobs = dict(protocol.matcher)
    overrides: dict[str, Any] = {}
    for name, value in given.items():
        if value is UNSET or (value is None and name != "pca_dim"):
            continue
        if value != knobs[name]:
            overrides[name] = value
        knobs[name] = value
    return knobs, overrides
