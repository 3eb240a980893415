"""A training run on a tiny fixed random extractor (fast), for the resume and torchrun tests.

    python toy_training.py DATA OUT [--batch-size 2] [--kill step:N | checkpoint:N]

``--kill step:N`` kills this process (SIGKILL) right after the N-th optimiser step's log line;
``--kill checkpoint:N`` inside the N-th write of checkpoint.pt, after the temporary file is
complete and before its rename. Under torchrun every rank runs the same command.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

import corr
from corr.extractors import ModuleExtractor

MINIREAL = Path(__file__).resolve().parents[1] / "data" / "minireal"


class TwoScales(torch.nn.Module):
    """A fixed random two-scale conv net (strides 4 and 8 on a 96 px input)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Conv2d(3, 16, 5, 4, 2)
        self.b = torch.nn.Conv2d(16, 24, 3, 2, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return [y, self.b(y)]


def matcher(cache: Path) -> corr.Matcher:
    ext = ModuleExtractor(TwoScales(), input_size=96, name="toy-two-scales")
    return corr.Matcher([ext], device="cpu", cache_dir=cache)


def options(data: Path, **overrides):
    from corr.train import TrainOptions

    recipe = {"epochs": 2, "projection_dim": 128, "eval_every": 10**6, **overrides}
    return TrainOptions(
        dataset="spair",
        root=str(data),
        overrides=recipe,
        flip_table=str(MINIREAL / "flip.json"),
        val_split="",
        checkpoint_every=3,
    )


def install_kill(spec: str) -> None:
    from corr.train import state

    moment, n = spec.split(":")
    calls = {"n": 0}

    def hit() -> bool:
        calls["n"] += 1
        return calls["n"] == int(n)

    if moment == "step":
        real = state.StepLog.append

        def append(self, entry):
            real(self, entry)
            if hit():
                os.kill(os.getpid(), signal.SIGKILL)

        state.StepLog.append = append
    elif moment == "checkpoint":
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if str(dst).endswith("checkpoint.pt") and hit():
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, *a, **k)

        os.replace = replace
    else:
        raise SystemExit(f"unknown moment {moment!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--kill")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.kill:
        install_kill(args.kill)
    from corr.distributed import context
    from corr.train import train

    ctx = context()
    out = Path(args.out)
    train(
        options(Path(args.data), batch_size=args.batch_size),
        matcher(out / "cache"),
        out,
        progress=False,
        log=lambda *a: None,
        ctx=ctx,
    )
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
