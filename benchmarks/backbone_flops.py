"""FLOPs per image of every known backbone at its input size, counted, not timed.

::

    python benchmarks/backbone_flops.py [--only sd15 dinov3_vitb16 ...] [--out flops.json]

Each extractor is built with random weights **on the meta device** (no memory, no compute:
the 7B DINOv3 costs nothing to build) and its ``extract`` is run once on a meta tensor of its
input size under ``torch.utils.flop_counter.FlopCounterMode``, which adds up the FLOPs of every
matrix multiplication, convolution and attention (2 per multiply-add). What is counted is what
``corr`` runs: for SD the VAE encoder and the UNet up to the last hooked decoder layer (the rest
never runs), times the tiles and the noise draws of the setting; for the ViTs the whole network.
Element-wise work (norms, activations, the soft-argmax) is not counted; it is small beside
these. The grid, channels and layer of each row are those of the maps it returned.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corr.extractors import create_extractor  # noqa: E402

SD_DEFAULT = {"input_size": 960, "layers": (2, 5, 8), "clean": None}
#: (row name, registered extractor, factory options, what the row is)
ROWS: list[tuple[str, str, dict, str]] = [
    ("sd15", "sd15", {"input_size": 960}, "one 960 px pass, layers 2/5/8 (corr)"),
    ("sd15 tiled", "sd15", {"input_size": 960, "tiled": True}, "4 x 512 px tiles (sd-dino, geoaware)"),
    ("sd21", "sd21", {"input_size": 960}, "one 960 px pass, layers 2/5/8"),
    ("sd21 dift", "sd21", {"input_size": 768, "layers": (6,), "ensemble": 8, "latent": "sample"}, "768 px, layer 6, 8 noise draws (dift)"),
    ("sd15-cleandift", "sd15-cleandift", {"input_size": 960, "prompt": ""}, "one 960 px pass, no noise"),
    ("sd15-cleandift tiled", "sd15-cleandift", {"input_size": 960, "tiled": True, "prompt": ""}, "4 x 512 px tiles (geoaware)"),
    ("sd21-cleandift dift", "sd21-cleandift", {"input_size": 768, "layers": (6,), "prompt": "", "latent": "sample"}, "768 px, layer 6, one pass (dift)"),
    ("dinov2_vits14", "dinov2_vits14", {"input_size": 840}, "840 px"),
    ("dinov2_vitb14", "dinov2_vitb14", {"input_size": 840}, "840 px"),
    ("dinov2_vitl14", "dinov2_vitl14", {"input_size": 840}, "840 px"),
    ("dinov2_vitg14", "dinov2_vitg14", {"input_size": 840}, "840 px"),
    ("dinov2_vits14_reg", "dinov2_vits14_reg", {"input_size": 840}, "840 px"),
    ("dinov2_vitb14_reg", "dinov2_vitb14_reg", {"input_size": 840}, "840 px"),
    ("dinov2_vitl14_reg", "dinov2_vitl14_reg", {"input_size": 840}, "840 px"),
    ("dinov2_vitg14_reg", "dinov2_vitg14_reg", {"input_size": 840}, "840 px"),
    ("dinov3_vits16", "dinov3_vits16", {"input_size": 960}, "960 px"),
    ("dinov3_vits16plus", "dinov3_vits16plus", {"input_size": 960}, "960 px"),
    ("dinov3_vitb16", "dinov3_vitb16", {"input_size": 960}, "960 px"),
    ("dinov3_vitl16", "dinov3_vitl16", {"input_size": 960}, "960 px"),
    ("dinov3_vith16plus", "dinov3_vith16plus", {"input_size": 960}, "960 px"),
    ("dinov3_vit7b16", "dinov3_vit7b16", {"input_size": 960}, "960 px"),
]  # fmt: skip


def _meta_noise(ext) -> None:
    """SD's noise is drawn on a CPU generator; on the meta device it is a meta tensor (its
    values do not change the FLOPs)."""
    if hasattr(ext, "noise"):
        ext.noise = lambda shape, seed: torch.zeros((1, *shape), device="meta")


def count(spec: str, options: dict) -> dict:
    """FLOPs of one ``extract`` of ``spec`` on one image at its input size, and its maps."""
    with torch.device("meta"):
        ext = create_extractor(spec, pretrained=False, **options)
    _meta_noise(ext)
    size = ext.input_size
    x = torch.zeros(1, 3, size, size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        maps = ext.extract(x)
    params = sum(p.numel() for p in ext.parameters())
    return {
        "input_size": size,
        "maps": {name: list(m.shape[1:]) for name, m in maps.items()},
        "flops": int(counter.get_total_flops()),
        "gflops": round(counter.get_total_flops() / 1e9, 1),
        "params_m": round(params / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="row names to measure (default: all)")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    for name, spec, options, what in ROWS:
        if args.only and name not in args.only:
            continue
        res = {"row": name, "extractor": spec, "setting": what, **count(spec, options)}
        rows.append(res)
        maps = ", ".join(f"{k} {c}x{h}x{w}" for k, (c, h, w) in res["maps"].items())
        print(f"| {name} | {res['input_size']} | {maps} | {res['gflops']:,.0f} | {res['params_m']} | {what} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
