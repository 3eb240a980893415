#!/usr/bin/env python
"""Speed benchmark: the SD+DINO pipeline stage by stage, an evaluation with the feature cache,
and the reference implementation's way of working on the same machine.

Usage::

    python benchmarks/bench_speed.py                                  # 960 / 840, fp32, auto device
    python benchmarks/bench_speed.py --resolution-scale 0.5           # SD 512, DINO 420 (CPU)
    python benchmarks/bench_speed.py --sd-size 512 --dino-size 448 --dtype bfloat16
    python benchmarks/bench_speed.py --device cuda --pairs 20 --images 8
    python benchmarks/bench_speed.py --tiny --sd-size 128 --dino-size 112   # toy size (tests)

The full-size architectures (SD 1.5 UNet + VAE, DINOv2 ViT-B/14) are built with RANDOM
weights (``create_extractor(..., pretrained=False)``): the time of a forward pass does not
depend on the weight values, so no checkpoint is needed. "Model build" is therefore the
construction of the architecture with random initialisation, not loading a checkpoint.

What is measured, in one run:

1. *One pair, ours* (cold feature cache, through :class:`corr.Matcher`): model build, letterbox,
   VAE encode, UNet up to the last hooked decoder layer (early exit), DINOv2 forward, co-PCA +
   fusion, matching of ``--points`` query points (soft-argmax) and the dense mode (every cell).
   Stage times come from timing wrappers placed around the extractor's own parts
   (``SDExtractor.encode``, ``SDExtractor.unet_features``, ``DinoExtractor.extract``,
   ``Letterbox.apply``, ``Matcher.descriptors``, the matching functions) for the duration of the
   run only; per-image stages are averaged over the pair's two images.
2. *Evaluation, ours*: ``--pairs`` pairs drawn over ``--images`` real photos through one
   ``Matcher`` with its feature cache, so each image is extracted once.
3. *Reference* (``--reference``, on by default; ``--no-reference`` skips it): the published
   code's way of working, re-implemented here with the same models: every pair extracts both
   images anew (no cache); SD as four overlapping tiles (512 px at 960, scaled with the SD
   size) each with a VAE encode, the FULL UNet (no early exit, through ``conv_out``) and a VAE
   decode whose output is unused; fp32 throughout; DINOv2 as ours but fp32; co-PCA + fusion
   and matching as ours. Its per-pair cost does not depend on the number of pairs (nothing is
   reused), so ``--reference-pairs`` (default 2) pairs are timed. Not modelled: the
   reference's caption conditioning (ODISE's implicit captioner); both sides use the zero
   conditioning.

Memory: peak resident set size of the process (the kernel's high-water mark, ``VmHWM``, reset
between phases through ``/proc/self/clear_refs`` where allowed; else ``ru_maxrss``, the peak
since the process started) on CPU; ``torch.cuda.max_memory_allocated`` on GPU.

Output: a table on stdout (every line names the stage, the unit, the resolution, the dtype
and the device) and a JSON file (``--out``) with the configuration, the machine and every
figure (with the individual samples).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import itertools
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "out" / "bench_speed.json"
REFERENCE_SIZES = {"sd": 960, "dino": 840, "tile": 512}
TINY_SIZES = {"sd": 192, "dino": 168, "tile": 128}
WEIGHTS_NOTE = (
    "random weights (pretrained=False): forward-pass time does not depend on the weight values; "
    "'model build' is constructing the architecture, not loading a checkpoint"
)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def shared_dir() -> Path:
    return Path(os.environ.get("CORR_SHARED", REPO.parent / "shared")).resolve()


def default_images() -> list[Path]:
    """Real photos: the bundled demo assets, then animal photos of ``shared/data/minireal``."""
    jpeg = shared_dir() / "data" / "minireal" / "SPair-71k" / "JPEGImages"
    candidates = [
        REPO / "demos" / "assets" / "gazelle.jpg",
        REPO / "demos" / "assets" / "jaguar.jpg",
        jpeg / "atrw" / "atrw_003464.jpg",
        jpeg / "atrw" / "atrw_000061.jpg",
        jpeg / "horse10" / "horse10_0244.jpg",
        jpeg / "horse10" / "horse10_0292.jpg",
        jpeg / "macaque" / "macaque_d47f1b1ee9d3217e.jpg",
        jpeg / "zebra" / "zebra_810.jpg",
    ]
    return [p for p in candidates if p.is_file()]


def draw_pairs(n_images: int, n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n_pairs`` (src, tgt) index pairs over ``n_images`` images: every unordered pair once in
    a seeded random order, then the reversed pairs, repeating as needed."""
    combos = list(itertools.combinations(range(n_images), 2))
    order = np.random.default_rng(seed).permutation(len(combos))
    pool = [combos[i] for i in order] + [(b, a) for a, b in (combos[i] for i in order)]
    return [pool[i % len(pool)] for i in range(n_pairs)]


def query_grid(width: int, height: int, n: int) -> np.ndarray:
    """``n`` source points on a regular grid over the central 80% of the image."""
    cols = int(np.ceil(np.sqrt(n * width / height)))
    rows = int(np.ceil(n / cols))
    xs = np.linspace(0.1, 0.9, cols) * (width - 1)
    ys = np.linspace(0.1, 0.9, rows) * (height - 1)
    pts = np.array([(x, y) for y in ys for x in xs], dtype=np.float64)
    return pts[:n]


def round_to(value: float, multiple: int, minimum: int | None = None) -> int:
    out = int(round(value / multiple)) * multiple
    return max(out, minimum if minimum is not None else multiple)


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------


class Stages:
    """Accumulates wall-clock samples per stage; synchronises CUDA around every sample."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.samples: dict[str, list[float]] = defaultdict(list)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def time(self, key: str):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.samples[key].append(time.perf_counter() - t0)

    def timed(self, fn: Callable, key: str) -> Callable:
        def wrapper(*args, **kwargs):
            with self.time(key):
                return fn(*args, **kwargs)

        wrapper.__wrapped__ = fn
        return wrapper

    @contextlib.contextmanager
    def wrap(self, obj: Any, attr: str, key: str):
        """Replace ``obj.attr`` by a timed wrapper for the duration of the block."""
        had_own = attr in vars(obj)
        original = getattr(obj, attr)
        setattr(obj, attr, self.timed(original, key))
        try:
            yield
        finally:
            if had_own:
                setattr(obj, attr, original)
            else:
                delattr(obj, attr)

    def clear(self, *keys: str) -> None:
        for k in keys:
            self.samples.pop(k, None)


def _hwm_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / (1024 * 1024) if sys.platform == "darwin" else ru / 1024


class Memory:
    """Peak memory per phase: CUDA allocator peak on GPU, peak RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resettable = self._reset_rss()
        self.phases: dict[str, float] = {}

    @staticmethod
    def _reset_rss() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    @property
    def kind(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated (per phase)"
        if self.resettable:
            return "peak RSS of the process (VmHWM, reset at the start of each phase)"
        return "peak RSS of the process since start (ru_maxrss; not resettable here)"

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            self._reset_rss()

    def stop(self, phase: str) -> float:
        if self.device.type == "cuda":
            mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            mb = _hwm_mb()
        self.phases[phase] = round(mb, 1)
        return mb


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    try:
        info["memory_gb"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (ValueError, OSError, AttributeError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    for name in ("diffusers", "timm"):
        try:
            info[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001 - informational only
            info[name] = None
    return info


# --------------------------------------------------------------------------------------------
# The reference's way of working
# --------------------------------------------------------------------------------------------


class ReferenceSD:
    """SD features as the reference computes them: 4 tiles, each VAE encode + FULL UNet
    (hooks capture the layers, nothing stops the forward pass) + an unused VAE decode, fp32."""

    def __init__(self, ours, unet, vae, tile: int, stages: Stages) -> None:
        from corr.extractors.sd import sd_layer_module

        self.ours = ours  # our SDExtractor: scheduler, timestep, seed, layers
        self.unet = unet
        self.vae = vae
        self.tile = tile
        self.stages = stages
        self.modules = {layer: sd_layer_module(unet, layer)[1] for layer in ours.layers}
        self.cond = torch.zeros(1, 77, unet.config.cross_attention_dim, device=ours.device)

    @torch.no_grad()
    def crop_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[int, torch.Tensor] = {}

        def hook_for(layer):
            def hook(_m, _i, out):
                captured[layer] = (
                    (out if isinstance(out, torch.Tensor) else out[0]).detach().float()
                )

            return hook

        handles = [m.register_forward_hook(hook_for(layer)) for layer, m in self.modules.items()]
        try:
            with self.stages.time("ref_vae_encode"):
                z0 = (
                    self.vae.encode(pixels * 2 - 1).latent_dist.mean
                    * self.vae.config.scaling_factor
                )
            eps = self.ours.noise(z0.shape[1:], self.ours.seed).to(z0.device)
            t = torch.tensor([self.ours.timestep], device=z0.device)
            z_t = self.ours.scheduler.add_noise(z0, eps, t)
            with self.stages.time("ref_unet_full"):
                self.unet(z_t, t, encoder_hidden_states=self.cond, return_dict=False)
            with self.stages.time("ref_vae_decode"):
                self.vae.decode(z0 / self.vae.config.scaling_factor, return_dict=False)  # unused
        finally:
            for h in handles:
                h.remove()
        return {f"sd{layer}": captured[layer] for layer in self.modules}

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        from corr.extractors.sd import stitch_tiles

        maps = stitch_tiles(pixels, self.tile, self.crop_features)
        return {name: m[0] for name, m in maps.items()}


def reference_pair(
    src: Path, tgt: Path, ref_sd, ref_dino, points: np.ndarray, stages: Stages, pca_dim: int
):
    """One pair the reference's way: both images extracted anew, co-PCA + fusion, matching."""
    from corr.fusion import build_descriptors
    from corr.geometry import Letterbox, grid_cells
    from corr.io import load_image
    from corr.matching import match_points

    maps = []
    for path in (src, tgt):
        arr = load_image(path)
        h, w = arr.shape[:2]
        per = []
        for ext, fn in ((ref_sd.ours, ref_sd), (ref_dino, ref_dino)):
            with stages.time("ref_letterbox"):
                boxed = Letterbox(w, h, ext.input_size).apply(arr, resample=ext.resample)
            px = torch.from_numpy(boxed).permute(2, 0, 1)[None].float().div(255.0).to(ext.device)
            if fn is ref_sd:
                with stages.time("ref_sd_total"):
                    per.append(ref_sd(px))
            else:
                with stages.time("ref_dino_forward"), torch.no_grad():
                    per.append({k: v[0] for k, v in ref_dino(px).items()})
        maps.append(per)
    frame = ref_dino.input_size
    grid = max(m.shape[-1] for m in maps[0][-1].values())
    with stages.time("ref_fusion"):
        ds, dt = build_descriptors(
            maps[0], maps[1], reduce=[True, False], weights=[0.5, 0.5], grid=grid, pca_dim=pca_dim
        )
    arr = load_image(src)
    lb = Letterbox(arr.shape[1], arr.shape[0], frame)
    cells = torch.from_numpy(grid_cells(lb.to_letterbox(points), frame, grid))
    with stages.time("ref_match_points"):
        match_points(ds, dt, cells, "softargmax", 5, 0.02, None)  # the reference masks no padding


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench_speed.py",
        description="Time the SD+DINO pipeline stage by stage (random weights), an evaluation with "
        "the feature cache, and the reference's way of working.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--resolution-scale",
        type=float,
        default=1.0,
        help="scale of the reference sizes (SD 960, DINO 840; tiny: 192, 168)",
    )
    p.add_argument(
        "--sd-size",
        type=int,
        default=None,
        help="SD letterbox side (multiple of 64); overrides the scale",
    )
    p.add_argument(
        "--dino-size",
        type=int,
        default=None,
        help="DINOv2 letterbox side (multiple of 14); overrides the scale",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="reference tile side (default: 512 x SD size / 960)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="our models' dtype (the reference is always float32)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--pairs", type=int, default=6, help="P: pairs in the evaluation")
    p.add_argument("--images", type=int, default=4, help="I: images the pairs are drawn over")
    p.add_argument("--points", type=int, default=20, help="query points per pair")
    p.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the reference's way of working",
    )
    p.add_argument(
        "--reference-pairs",
        type=int,
        default=2,
        help="pairs timed the reference's way (its per-pair cost is constant)",
    )
    p.add_argument(
        "--image-files",
        nargs="+",
        default=None,
        help="photos to use (default: demos/assets + shared/data/minireal)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed warm-up passes per model (default: 1 on CUDA, 0 on CPU)",
    )
    p.add_argument("--pca-dim", type=int, default=256)
    p.add_argument(
        "--tiny", action="store_true", help="tiny random models (sd-tiny, dinov2-tiny) for tests"
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output")
    return p


def resolve_sizes(args) -> dict[str, int]:
    base = TINY_SIZES if args.tiny else REFERENCE_SIZES
    sd = (
        args.sd_size
        if args.sd_size is not None
        else round_to(base["sd"] * args.resolution_scale, 64)
    )
    dino = (
        args.dino_size
        if args.dino_size is not None
        else round_to(base["dino"] * args.resolution_scale, 14)
    )
    tile = (
        args.tile_size
        if args.tile_size is not None
        else min(sd, round_to(base["tile"] * sd / base["sd"], 64))
    )
    if sd % 64 or dino % 14:
        raise SystemExit(
            f"--sd-size must be a multiple of 64 and --dino-size of 14 (got {sd}, {dino})"
        )
    if tile > sd or tile % 64 or (sd - tile) % 64:
        raise SystemExit(
            f"reference tile {tile} must be a multiple of 64, <= SD size {sd}, and SD - tile a multiple of 64"
        )
    return {"sd": sd, "dino": dino, "tile": tile}


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args, argv)
    finally:
        torch.set_num_threads(threads)


def run(args, argv) -> int:
    load_before = _loadavg()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = resolve_sizes(args)
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cuda" else 0)
    image_files = [Path(p) for p in args.image_files] if args.image_files else default_images()
    missing = [str(p) for p in image_files if not p.is_file()]
    if missing:
        raise SystemExit(f"image files not found: {', '.join(missing)}")
    if len(image_files) < 2:
        raise SystemExit(
            "need at least 2 photos (--image-files, or demos/assets and shared/data/minireal)"
        )
    n_images = min(args.images, len(image_files))
    if n_images < 2:
        raise SystemExit("--images must be at least 2")
    images = image_files[:n_images]
    pairs = draw_pairs(n_images, args.pairs)
    names = ("sd-tiny", "dinov2-tiny") if args.tiny else ("sd15", "dinov2_vitb14")
    dtype_short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[args.dtype]
    ctx_sd = f"SD {sizes['sd']} px, {dtype_short}, {device.type}"
    ctx_dino = f"DINO {sizes['dino']} px, {dtype_short}, {device.type}"
    ctx_pair = f"SD {sizes['sd']} / DINO {sizes['dino']} px, {dtype_short}, {device.type}"

    import corr
    from corr.extractors import create_extractor
    from corr.geometry import Letterbox
    from corr.io import load_image

    for module in ("corr.extractors.sd", "corr.extractors.dino"):
        importlib.import_module(module)  # registers the built-in names
    import corr.pipeline as pipeline

    stages = Stages(device)
    memory = Memory(device)
    print(f"bench_speed: {names[0]} + {names[1]}, {WEIGHTS_NOTE}")
    print(
        f"  device {device}, dtype {args.dtype}, SD {sizes['sd']} px, DINO {sizes['dino']} px, "
        f"{torch.get_num_threads()} torch threads; photos: {', '.join(p.name for p in images)}"
    )

    # ---- build
    memory.start()
    with stages.time("build_sd"):
        sd = create_extractor(
            names[0], pretrained=False, dtype=dtype_short, input_size=sizes["sd"], device=device
        )
    with stages.time("build_dino"):
        dino = create_extractor(
            names[1], pretrained=False, dtype=dtype_short, input_size=sizes["dino"], device=device
        )
    for _ in range(warmup):
        with torch.no_grad():
            sd(torch.rand(1, 3, sizes["sd"], sizes["sd"], device=device))
            dino(torch.rand(1, 3, sizes["dino"], sizes["dino"], device=device))

    # ---- one pair, cold cache, stage by stage
    src, tgt = images[pairs[0][0]], images[pairs[0][1]]
    src_arr = load_image(src)
    points = query_grid(src_arr.shape[1], src_arr.shape[0], args.points)
    matcher = corr.Matcher([sd, dino], fuse=0.5, pca_dim=args.pca_dim, device=device)
    with contextlib.ExitStack() as stack:
        stack.enter_context(stages.wrap(Letterbox, "apply", "letterbox"))
        stack.enter_context(stages.wrap(sd, "encode", "vae_encode"))
        stack.enter_context(stages.wrap(sd, "unet_features", "unet"))
        stack.enter_context(stages.wrap(sd, "extract", "sd_total"))
        stack.enter_context(stages.wrap(dino, "extract", "dino_forward"))
        stack.enter_context(stages.wrap(matcher, "descriptors", "fusion"))
        stack.enter_context(stages.wrap(pipeline, "match_points", "match_points"))
        stack.enter_context(stages.wrap(pipeline, "dense_match", "match_dense"))
        with stages.time("single_pair"):
            matcher.match(src, tgt, points)
        with stages.time("dense_pair"):
            dense = matcher.dense(src, tgt)
    grid = dense["confidence"].shape[0]
    memory.stop("single_pair")

    # ---- evaluation with the feature cache
    memory.start()
    eval_matcher = corr.Matcher(
        [sd, dino], fuse=0.5, pca_dim=args.pca_dim, device=device, memory_cache=2 * n_images + 2
    )
    queries = {}
    for i in range(n_images):
        arr = load_image(images[i])
        queries[i] = query_grid(arr.shape[1], arr.shape[0], args.points)
    with stages.time("eval_total"):
        for a, b in pairs:
            eval_matcher.match(images[a], images[b], queries[a])
    extractions = eval_matcher.cache.misses // len(eval_matcher.extractors)
    memory.stop("evaluation")

    # ---- the reference's way
    ref: dict[str, Any] | None = None
    if args.reference:
        from corr._compat import ensure_torchvision_importable
        from corr.extractors.sd import build_sd_models, load_config

        memory.start()
        with stages.time("ref_build"):
            prefix = "sd_tiny" if args.tiny else "sd15"
            if dtype_short == "fp32":
                ensure_torchvision_importable()
                from diffusers import AutoencoderKL

                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    vae = AutoencoderKL.from_config(load_config(f"{prefix}_vae"))
                unet = sd.unet
                ref_dino = dino
            else:
                models = build_sd_models(names[0], pretrained=False, dtype=torch.float32)
                unet, vae = models.unet, models.vae
                ref_dino = create_extractor(
                    names[1],
                    pretrained=False,
                    dtype="fp32",
                    input_size=sizes["dino"],
                    device=device,
                )
            vae = vae.to(device).eval().requires_grad_(False)
            unet = unet.to(device).eval()
        ref_sd = ReferenceSD(sd, unet, vae, sizes["tile"], stages)
        n_ref = max(1, min(args.reference_pairs, len(pairs)))
        with stages.time("ref_total"):
            for a, b in pairs[:n_ref]:
                reference_pair(
                    images[a], images[b], ref_sd, ref_dino, queries[a], stages, args.pca_dim
                )
        memory.stop("reference")
        ref = {"pairs": n_ref}

    # ---- figures
    s = stages.samples
    n_pairs = len(pairs)
    figures: dict[str, dict[str, Any]] = {}

    def put(key: str, seconds: float, unit: str, what: str, context: str, samples=None) -> None:
        figures[key] = {
            "seconds": round(seconds, 4),
            "unit": unit,
            "what": what,
            "context": context,
        }
        if samples is not None:
            figures[key]["samples"] = [round(x, 4) for x in samples]

    # each image is letterboxed once per extractor: 2 samples per image
    lb_per_image = [a + b for a, b in zip(s["letterbox"][0::2], s["letterbox"][1::2], strict=False)]
    put(
        "build_sd",
        s["build_sd"][0],
        "s once",
        f"build {names[0]} (UNet + VAE encoder)",
        f"{dtype_short}, {device.type}",
    )
    put(
        "build_dino",
        s["build_dino"][0],
        "s once",
        f"build {names[1]}",
        f"{dtype_short}, {device.type}",
    )
    put(
        "letterbox",
        _mean(lb_per_image),
        "s/image",
        "letterbox for SD and DINO (resize + pad)",
        ctx_pair,
        lb_per_image,
    )
    put(
        "vae_encode",
        _mean(s["vae_encode"]),
        "s/image",
        "VAE encode (posterior mean)",
        ctx_sd,
        s["vae_encode"],
    )
    put(
        "unet",
        _mean(s["unet"]),
        "s/image",
        "UNet up to the last hooked layer (early exit)",
        ctx_sd,
        s["unet"],
    )
    put(
        "sd_total",
        _mean(s["sd_total"]),
        "s/image",
        "SD extractor total (encode + noise + UNet)",
        ctx_sd,
        s["sd_total"],
    )
    put(
        "dino_forward",
        _mean(s["dino_forward"]),
        "s/image",
        "DINOv2 forward (last block tokens)",
        ctx_dino,
        s["dino_forward"],
    )
    put(
        "fusion",
        _mean(s["fusion"]),
        "s/pair",
        "co-PCA (256/layer) + L2 fusion of a pair",
        f"grid {grid}x{grid}, {device.type}",
        s["fusion"],
    )
    put(
        "match_points",
        _mean(s["match_points"]),
        "s/pair",
        f"soft-argmax matching of {args.points} points",
        f"grid {grid}x{grid}, {device.type}",
        s["match_points"],
    )
    put(
        "match_dense",
        _mean(s["match_dense"]),
        "s/pair",
        f"dense matching of all {grid * grid} cells",
        f"grid {grid}x{grid}, {device.type}",
        s["match_dense"],
    )
    put(
        "single_pair",
        s["single_pair"][0],
        "s/pair",
        f"one pair end to end, cold cache ({args.points} points)",
        ctx_pair,
    )
    put(
        "dense_pair",
        s["dense_pair"][0],
        "s/pair",
        "dense flow of the same pair, features cached",
        ctx_pair,
    )
    put(
        "eval_total",
        s["eval_total"][0],
        "s total",
        f"evaluation: {n_pairs} pairs over {n_images} images, feature cache",
        ctx_pair,
    )
    put(
        "eval_per_pair",
        s["eval_total"][0] / n_pairs,
        "s/pair",
        "evaluation, per pair (each image extracted once)",
        ctx_pair,
    )
    ratio = None
    if ref is not None:
        n_ref = ref["pairs"]
        ref_ctx = f"SD {sizes['sd']} px as 4 tiles of {sizes['tile']} / DINO {sizes['dino']} px, fp32, {device.type}"
        per_ref_image = 2 * n_ref
        put(
            "ref_build",
            s["ref_build"][0],
            "s once",
            "reference: extra modules (VAE with decoder; fp32 copies)",
            f"fp32, {device.type}",
        )
        put(
            "ref_vae_encode",
            sum(s["ref_vae_encode"]) / per_ref_image,
            "s/image",
            "reference: VAE encode, 4 tiles",
            ref_ctx,
        )
        put(
            "ref_unet_full",
            sum(s["ref_unet_full"]) / per_ref_image,
            "s/image",
            "reference: FULL UNet (no early exit), 4 tiles",
            ref_ctx,
        )
        put(
            "ref_vae_decode",
            sum(s["ref_vae_decode"]) / per_ref_image,
            "s/image",
            "reference: unused VAE decode, 4 tiles",
            ref_ctx,
        )
        put(
            "ref_sd_total",
            _mean(s["ref_sd_total"]),
            "s/image",
            "reference: SD total",
            ref_ctx,
            s["ref_sd_total"],
        )
        put(
            "ref_dino_forward",
            _mean(s["ref_dino_forward"]),
            "s/image",
            "reference: DINOv2 forward",
            f"DINO {sizes['dino']} px, fp32, {device.type}",
            s["ref_dino_forward"],
        )
        put(
            "ref_fusion",
            _mean(s["ref_fusion"]),
            "s/pair",
            "reference: co-PCA + fusion",
            f"grid {grid}x{grid}, {device.type}",
        )
        put(
            "ref_match_points",
            _mean(s["ref_match_points"]),
            "s/pair",
            f"reference: matching of {args.points} points",
            f"grid {grid}x{grid}, {device.type}",
        )
        put(
            "ref_per_pair",
            s["ref_total"][0] / n_ref,
            "s/pair",
            f"reference: per pair, both images extracted anew ({n_ref} timed)",
            ref_ctx,
        )
        ratio = {
            "reference_over_ours_eval": round(
                figures["ref_per_pair"]["seconds"] / figures["eval_per_pair"]["seconds"], 2
            ),
            "reference_over_ours_single_pair": round(
                figures["ref_per_pair"]["seconds"] / figures["single_pair"]["seconds"], 2
            ),
            "what": (
                "reference seconds per pair / ours: (a) ours in the evaluation with the feature "
                f"cache ({n_pairs} pairs over {n_images} images), (b) ours for one pair with a cold cache"
            ),
        }
    peak = max(memory.phases.values())
    mem = {"kind": memory.kind, "unit": "MB", "peak_mb": round(peak, 1), "phases_mb": memory.phases}

    # ---- table
    rows = [(f["what"], f"{f['seconds']:.3f}", f["unit"], f["context"]) for f in figures.values()]
    if ratio is not None:
        rows.append(
            (
                "ratio reference / ours per pair (ours: evaluation with cache)",
                f"{ratio['reference_over_ours_eval']:.2f}",
                "x",
                f"{n_pairs} pairs over {n_images} images",
            )
        )
        rows.append(
            (
                "ratio reference / ours per pair (ours: one cold pair)",
                f"{ratio['reference_over_ours_single_pair']:.2f}",
                "x",
                "no reuse on either side",
            )
        )
    for phase, mb in memory.phases.items():
        rows.append((f"peak memory, phase: {phase}", f"{mb:.0f}", "MB", memory.kind))
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'stage':<{width}} {'value':>9}  {'unit':<8} context")
    print("-" * (width + 60))
    for what, value, unit, context in rows:
        print(f"{what:<{width}} {value:>9}  {unit:<8} {context}")
    print(
        f"evaluation extracted {extractions} images for {n_pairs} pairs (feature cache); {WEIGHTS_NOTE}"
    )
    print(
        f"load average (1 min) before / after: {load_before and load_before[0]} / {(_loadavg() or [None])[0]} on {os.cpu_count()} CPUs"
    )

    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_speed.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "note": WEIGHTS_NOTE,
        "config": {
            "models": list(names),
            "sd_size": sizes["sd"],
            "dino_size": sizes["dino"],
            "reference_tile": sizes["tile"],
            "resolution_scale": args.resolution_scale,
            "dtype": args.dtype,
            "reference_dtype": "float32",
            "device": str(device),
            "points_per_pair": args.points,
            "pairs": n_pairs,
            "images": [str(p) for p in images],
            "pair_indices": pairs,
            "reference_pairs": None if ref is None else ref["pairs"],
            "pca_dim": args.pca_dim,
            "grid": grid,
            "warmup": warmup,
            "sd_layers": list(sd.layers),
        },
        "machine": {
            **machine_info(device),
            "loadavg_1_5_15_before": load_before,
            "loadavg_1_5_15_after": _loadavg(),
        },
        "stages": figures,
        "evaluation": {
            "pairs": n_pairs,
            "images": n_images,
            "extractions": extractions,
            "total_s": figures["eval_total"]["seconds"],
            "per_pair_s": figures["eval_per_pair"]["seconds"],
        },
        "reference": None
        if ref is None
        else {"pairs": ref["pairs"], "per_pair_s": figures["ref_per_pair"]["seconds"]},
        "ratio": ratio,
        "memory": mem,
    }
    out = Path(args.out)
    from corr.io import atomic_write_json
    from corr.viz import readable_by_others

    atomic_write_json(out, report)
    readable_by_others(out)
    print(f"json: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
