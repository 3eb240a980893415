"""Device choice (``"auto"`` picks CUDA, then Apple MPS, then the CPU) and the pair stage's
threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps"


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None``/``"auto"`` -> the best device here; anything else is checked and returned.

    A CUDA or MPS device that this machine does not have is refused with a message naming it,
    instead of failing later inside a model.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device name ({DEVICE_HELP}): {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: no CUDA device is available here; use 'cpu' or 'auto'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if dev.type == "mps" and not mps_available():
        raise ValueError(f"device {device!r}: Apple MPS is not available here; use 'cpu' or 'auto'")
    return dev


#: The pair stage's default number of torch threads (``--threads``; docs in the README).
PAIR_STAGE_THREADS = 1


def pair_stage_threads(requested: int | None = None) -> int:
    """Threads for the pair stage of an evaluation (co-PCA, fusion, matching): ``requested``,
    else :data:`PAIR_STAGE_THREADS`.

    One by default, measured on a 2-core CPU (AMD EPYC, torch 2.13): a cached pair is a few
    small operations, and with two OpenMP threads while another process kept one core busy
    the threads waited on each other: the minireal pair stage ran at 5.9-84 pairs/s (against
    44-58 with one thread), a co-PCA pair at SD 512 / DINOv2 420 px took 4-14 s in 3 of 10
    samples (0.3 s with one thread). On an idle machine two threads gained 1.1x (minireal) to
    1.8x (the co-PCA pair). One thread also keeps the predictions independent of the core
    count and the load: co-PCA's eigendecomposition and products round differently with two
    threads (coordinates moved by up to 1e-5 cells). Give more where cores are idle and the
    pairs are large.
    """
    n = PAIR_STAGE_THREADS if requested is None else int(requested)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {requested}")
    return n


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; the previous number is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
