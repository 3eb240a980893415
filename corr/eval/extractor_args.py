"""The extractor options of the command lines (``corr.eval``, ``corr.extract``, ``corr.train``):
the argument group, which extractors a run uses, and the options each extractor is built with."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = [
    "DINO_OPTION_FLAGS",
    "HelpFormatter",
    "SD_NAMES",
    "SD_OPTION_FLAGS",
    "add_extractor_arguments",
    "default_extractors",
    "dtype_name",
    "extractor_options",
    "extractor_specs",
]


class HelpFormatter(argparse.HelpFormatter):
    """Shows a default once: only when it is set and the help text does not already give it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


SD_OPTION_FLAGS = {
    "timestep": "timestep",
    "ensemble": "ensemble",
    "prompt": "prompt",
    "sd_size": "input_size",
    "tiled": "tiled",
    "freeu": "freeu",
    "sd_layers": "layers",
    "seed": "seed",
}
DINO_OPTION_FLAGS = {"dino_size": "input_size"}
#: the SD models --sd-model names directly (anything else is a folder or hub id for "sd")
SD_NAMES = ("sd15", "sd21", "sd15-cleandift", "sd21-cleandift")


def add_extractor_arguments(p: argparse.ArgumentParser) -> None:
    """The extractor options shared by ``corr.eval`` and ``corr.extract``."""
    e = p.add_argument_group("extractors")
    e.add_argument(
        "--extractor",
        action="append",
        metavar="NAME",
        help="registered name, preset (sd-dino, sd, dino, tiny) or 'module:factory'; repeat to fuse several "
        "(replaces --sd-model/--dino)",
    )
    e.add_argument(
        "--sd-model",
        "--sd",
        help="sd15, sd21, sd15-cleandift, sd21-cleandift, or a diffusers folder / hub id "
        "(default: the protocol's; sd15 for corr)",
    )
    e.add_argument(
        "--sd-repo",
        help="hub id or diffusers folder tried first for the SD model's weights (sets "
        "CORR_<NAME>_REPO, e.g. CORR_SD21_REPO; default: the official id, then verified mirrors)",
    )
    e.add_argument(
        "--dino",
        choices=("vits14", "vitb14", "vitl14", "vitg14"),
        help="DINOv2 size (default vitb14)",
    )
    e.add_argument("--registers", action="store_true", help="DINOv2 with registers")
    e.add_argument("--timestep", type=int, help="SD timestep t (default 100)")
    e.add_argument("--ensemble", type=int, help="SD noise draws averaged (default 1)")
    e.add_argument(
        "--prompt", help="SD text prompt; may contain {category} (default: empty prompt)"
    )
    e.add_argument(
        "--sd-layers",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        help="SD decoder layers, e.g. 2,5,8",
    )
    e.add_argument("--sd-size", type=int, help="SD input side (default 960)")
    e.add_argument("--dino-size", type=int, help="DINOv2 input side (default 840)")
    e.add_argument(
        "--tiled", action="store_true", default=None, help="parity: 4 tiled 512 px SD passes"
    )
    e.add_argument(
        "--freeu",
        nargs="?",
        const="diffusers",
        choices=("off", "diffusers", "geoaware"),
        help="FreeU rule: diffusers' block-index rule (bare --freeu), or GeoAware-SC's "
        "channel-count rule (the geoaware protocol's); off to disable",
    )
    e.add_argument("--seed", type=int, help="SD noise seed (default 42)")
    e.add_argument(
        "--dtype",
        choices=("auto", "fp32", "bf16", "fp16", "float32", "bfloat16", "float16"),
        default="auto",
        help="compute dtype of the networks (features are stored in fp16 either way); auto: "
        "bf16 autocast where a one-off probe finds it faster (or CUDA has it), else fp32",
    )
    e.add_argument(
        "--autocast",
        choices=("bf16", "fp16", "bfloat16", "float16"),
        help="mixed precision: run the networks under torch.autocast in this dtype (weights "
        "keep --dtype); features are cached under their own key",
    )
    e.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps",
    )
    e.add_argument(
        "--attention",
        choices=("sdpa", "xformers"),
        help="SD attention kernels: PyTorch SDPA (default), or xformers (used on CUDA; the "
        'package must be installed: pip install "semcorr[xformers]")',
    )
    e.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the extractors (a first call per input size compiles; measure first)",
    )
    e.add_argument(
        "--no-pretrained",
        action="store_true",
        help="random weights (tests and speed checks only: the scores are meaningless)",
    )


def extractor_specs(args: argparse.Namespace, protocol_extractors: Sequence[str] = ()) -> list[str]:
    """The extractors of a run: ``--extractor``, else ``--sd-model``/``--dino``, else the protocol's."""
    from ..matcher import PRESETS

    if args.extractor:
        specs: list[str] = []
        for name in args.extractor:
            specs.extend(PRESETS.get(name, (name,)))
        return specs
    if args.sd_model is None and args.dino is None and not args.registers and protocol_extractors:
        return list(protocol_extractors)
    sd_model = args.sd_model or "sd15"
    sd = sd_model if sd_model in SD_NAMES else "sd"
    dino = f"dinov2_{args.dino or 'vitb14'}" + ("_reg" if args.registers else "")
    return [sd, dino]


def extractor_options(args: argparse.Namespace, specs: Sequence[str]) -> dict[str, dict]:
    sd_opts = {
        key: getattr(args, flag)
        for flag, key in SD_OPTION_FLAGS.items()
        if getattr(args, flag) is not None
    }
    dino_opts = {
        key: getattr(args, flag)
        for flag, key in DINO_OPTION_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if getattr(args, "attention", None):
        sd_opts["xformers"] = args.attention == "xformers"
    options: dict[str, dict] = {}
    for spec in specs:
        if spec.startswith("sd"):
            options[spec] = dict(sd_opts)
            if spec == "sd":
                options[spec]["model"] = args.sd_model
            if getattr(args, "sd_repo", None) and spec in SD_NAMES:
                from ..weights import KNOWN_WEIGHTS, set_repo_override

                set_repo_override(KNOWN_WEIGHTS[spec].base or spec, args.sd_repo)
        elif spec.startswith(("dinov2", "dinov3")):
            options[spec] = dict(dino_opts)
    return options


def default_extractors(args: argparse.Namespace, protocol) -> Sequence[str]:
    """The protocol's extractors, or with ``--adapter`` those it was trained on."""
    if args.adapter:
        from ..adapters import trained_features

        try:
            return trained_features(args.adapter)["extractors"]
        except (OSError, ValueError):  # not there: the preflight names it
            pass
    return protocol.extractors


def dtype_name(args: argparse.Namespace) -> str | None:
    """``--dtype`` in its short form (``fp32``, ``bf16``, ``fp16`` or ``auto``)."""
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(args.dtype, args.dtype)
