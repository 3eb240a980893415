#!/usr/bin/env python
"""Speed benchmark of the SD+DINO pipeline (random weights): one pair stage by stage, the
two-stage evaluation (images/s of ``Matcher.extract``, pairs/s of the cached pair stage), the
reference implementation's way of working in interleaved A/B rounds, and the SPair-71k test
workload extrapolated from the measured rates. See benchmarks/README.md.

Usage::

    python benchmarks/bench_speed.py                                  # 960 / 840, fp32, auto device
    python benchmarks/bench_speed.py --resolution-scale 0.5           # SD 512, DINO 420 (CPU)
    python benchmarks/bench_speed.py --dtype bfloat16 --extract-variants 1x0 4x2
    python benchmarks/bench_speed.py --tiny --sd-size 128 --dino-size 112   # toy size (tests)

The code lives in ``benchmarks/speed/`` (one module per measurement).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # makes benchmarks/speed importable as ``speed``

from speed.cli import build_parser, main  # noqa: E402
from speed.workloads import draw_pairs, query_grid, resolve_sizes  # noqa: E402

__all__ = ["build_parser", "draw_pairs", "main", "query_grid", "resolve_sizes"]

if __name__ == "__main__":
    sys.exit(main())
