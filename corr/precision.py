"""``dtype="auto"``: bf16 where this machine runs it faster than fp32, fp32 elsewhere.

bf16 speed depends on the CPU: with AVX512-BF16 or AMX (oneDNN's ``avx512_core_bf16`` /
``amx`` kernels) a bf16 convolution runs about 2x faster than fp32; without them it falls back
to slow reference code (a 3x3 convolution 1x320x120x120 measured 300x slower). So ``"auto"``
never assumes:

- **CPU**: a one-off probe (:func:`probe_bf16`) times a small convolution and a matrix
  product both ways; bf16 is chosen when it takes at most :data:`BF16_MARGIN` of fp32's time.
  The probe's figures are kept in ``{cache folder}/corr/dtype_probe.json`` per machine (CPU
  model and flags) and torch version, so it runs once per machine.
- **CUDA**: bf16 where the device supports it (``torch.cuda.is_bf16_supported()``).
- **Apple MPS** and anything else: fp32.

bf16 is applied as ``torch.autocast`` (:meth:`corr.extractors.Extractor.set_autocast`: the
weights stay fp32, convolutions and matrix products run in bf16), which every extractor
supports, custom ones included; features under autocast have their own feature-cache key. An
explicit ``dtype`` or ``autocast`` is used as given.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

#: bf16 is chosen on a CPU when its probe time is at most this share of fp32's.
BF16_MARGIN = 0.8
#: what the probe times (changing it invalidates kept results)
PROBE = {
    "version": 1,
    "conv": "conv2d 1x64x48x48, 64 filters 3x3",
    "matmul": "(576 x 384) @ (384 x 384)",
}
#: a bf16 call slower than this many times fp32's ends the probe at once (no bf16 kernels)
_HOPELESS = 4.0


@dataclass
class Precision:
    """What ``dtype="auto"`` chose, and why (recorded in a run's ``config.json``).

    ``requested``: the dtype asked for; ``chosen``: ``"bf16"`` or ``"fp32"``; ``applied_as``:
    ``"autocast"`` (bf16 under ``torch.autocast``) or ``None``; ``reason``: one sentence;
    ``probe``: the CPU probe's figures (ms per call, whether they were kept from an earlier
    run), or ``None``."""

    requested: str
    device: str
    chosen: str
    applied_as: str | None
    reason: str
    probe: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_key() -> str:
    """This machine and torch version, as the probe's results are kept: CPU model and flags
    (``/proc/cpuinfo`` where there is one), architecture, torch version."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and not model:
                    model = value.strip()
                elif name.strip() == "flags" and not flags:
                    flags = value.strip()
    except OSError:
        pass
    model = model or platform.processor()
    flag_hash = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    return f"{platform.machine()}|{model}|flags:{flag_hash}|torch {torch.__version__}"


def probe_file() -> Path:
    """Where probe results are kept: ``$XDG_CACHE_HOME/corr/dtype_probe.json`` (else
    ``~/.cache/corr/dtype_probe.json``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "corr" / "dtype_probe.json"


def _time_ms(fn: Callable[[], Any], repeats: int, limit_ms: float | None = None) -> float:
    """The fastest of ``repeats`` calls in ms (after one untimed call); stops early once a
    call exceeds ``limit_ms``."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
        if limit_ms is not None and best > limit_ms:
            break
    return best


def cpu_timings(repeats: int = 5) -> dict[str, float]:
    """The probe on this CPU: ms per call of :data:`PROBE`'s convolution and product in fp32
    and bf16 (the bf16 side stopped after one call when hopeless)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 48, 48, generator=gen)
    w = torch.randn(64, 64, 3, 3, generator=gen)
    a = torch.randn(576, 384, generator=gen)
    b = torch.randn(384, 384, generator=gen)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, fn32, args in (
            ("conv", torch.nn.functional.conv2d, (x, w)),
            ("matmul", torch.matmul, (a, b)),
        ):
            args16 = [t.to(torch.bfloat16) for t in args]
            out[f"{name}_fp32_ms"] = t32 = _time_ms(lambda f=fn32, z=args: f(*z), repeats)
            out[f"{name}_bf16_ms"] = _time_ms(
                lambda f=fn32, z=args16: f(*z), repeats, limit_ms=_HOPELESS * t32
            )
    return {k: round(v, 4) for k, v in out.items()}


def probe_bf16(
    timer: Callable[[], dict[str, float]] | None = None,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Whether bf16 is faster than fp32 on this CPU: ``{"machine", "probe", timings...,
    "bf16_share", "bf16_faster", "kept"}``. ``bf16_share`` is the bf16 time over the fp32
    time, summed over the probe's operations; ``bf16_faster`` is ``bf16_share <=``
    :data:`BF16_MARGIN`. Results are kept in ``cache`` (default :func:`probe_file`) per
    :func:`machine_key`; ``kept`` says they came from there. ``timer`` replaces
    :func:`cpu_timings` (tests inject timings)."""
    path = probe_file() if cache is None else Path(cache)
    key = f"{machine_key()}|probe {PROBE['version']}"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    entry = kept.get(key) if isinstance(kept, dict) else None
    if isinstance(entry, dict) and "bf16_share" in entry:
        return {**entry, "kept": True}
    times = (timer or cpu_timings)()
    fp32 = sum(v for k, v in times.items() if k.endswith("_fp32_ms"))
    bf16 = sum(v for k, v in times.items() if k.endswith("_bf16_ms"))
    share = bf16 / fp32 if fp32 > 0 else float("inf")
    entry = {
        "machine": machine_key(),
        "probe": dict(PROBE),
        **times,
        "bf16_share": round(share, 4),
        "bf16_faster": share <= BF16_MARGIN,
    }
    try:  # keep it for the next run; a folder that cannot be written only costs a probe
        kept = kept if isinstance(kept, dict) else {}
        kept[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(kept, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass
    return {**entry, "kept": False}


def resolve_precision(
    dtype: str | torch.dtype | None,
    autocast: str | torch.dtype | None,
    device: torch.device,
    probe: Callable[[], dict[str, Any]] | None = None,
) -> tuple[str | torch.dtype | None, str | torch.dtype | None, Precision | None]:
    """``(dtype, autocast, record)`` for the extractors: ``dtype="auto"`` becomes ``None`` (the
    factories' fp32) with ``autocast="bf16"`` when bf16 wins on ``device`` (see the module
    docstring), else fp32 as it is; an explicit ``autocast`` is kept (then fp32 weights).
    Other values pass unchanged with ``record=None``. ``probe`` replaces :func:`probe_bf16`."""
    if not (isinstance(dtype, str) and dtype.lower() == "auto"):
        return dtype, autocast, None
    dev = str(device)
    if autocast is not None:
        return None, autocast, Precision("auto", dev, "fp32", None, "autocast given explicitly")
    if device.type == "cpu":
        found = (probe or probe_bf16)()
        faster = bool(found.get("bf16_faster"))
        reason = (
            f"CPU probe: bf16 took {found.get('bf16_share')} of fp32's time "
            f"({'<=' if faster else '>'} {BF16_MARGIN})"
        )
        chosen = "bf16" if faster else "fp32"
        record = Precision("auto", dev, chosen, "autocast" if faster else None, reason, found)
        return None, ("bf16" if faster else None), record
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return None, "bf16", Precision("auto", dev, "bf16", "autocast", "CUDA supports bf16")
    why = "CUDA without bf16" if device.type == "cuda" else f"{device.type}: fp32"
    return None, None, Precision("auto", dev, "fp32", None, why)


def resolve_on(
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    autocast: str | torch.dtype | None,
) -> tuple[str | torch.dtype | None, str | torch.dtype | None, Precision | None]:
    """:func:`resolve_precision` on the device named ``device`` (``"auto"``, ``"cuda:1"``, ...;
    :func:`corr.devices.resolve_device`), for command lines that resolve before building."""
    from .devices import resolve_device

    return resolve_precision(dtype, autocast, resolve_device(device))
