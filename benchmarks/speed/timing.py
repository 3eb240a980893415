"""Wall-clock stages, peak memory, machine information, load average and progress lines."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

_T0 = time.perf_counter()


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def progress(message: str) -> None:
    """One progress line on stderr (flushed): elapsed time, 1-minute load, the message."""
    load = loadavg()
    load_s = f"load {load[0]:.2f}" if load else "load n/a"
    print(
        f"[bench_speed +{time.perf_counter() - _T0:7.1f} s, {load_s}] {message}",
        file=sys.stderr,
        flush=True,
    )


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

    def last(self, key: str) -> float:
        return self.samples[key][-1]


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
        self._phase_peak = 0.0

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
            return "peak RSS of the main process (VmHWM, reset per phase; DataLoader workers not included)"
        return "peak RSS of the process since start (ru_maxrss; not resettable here)"

    def start(self) -> None:
        self._reset()
        self._phase_peak = 0.0

    def _reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            self._reset_rss()

    def _read(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _hwm_mb()

    def mark(self) -> float:
        """The peak (MB) since the phase's start or the previous mark, then a fresh count; the
        phase's own peak (:meth:`stop`) still covers every part (e.g. one batch size each)."""
        mb = self._read()
        self._phase_peak = max(self._phase_peak, mb)
        self._reset()
        return mb

    def stop(self, phase: str) -> float:
        mb = max(self._read(), self._phase_peak)
        self.phases[phase] = round(mb, 1)
        return mb


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
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
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
