#!/usr/bin/env python
"""The cached pair stage of ``python -m corr.eval`` on minireal, in pairs/s, per thread count.

Usage::

    python benchmarks/speed/pair_stage.py [--root shared/data/minireal] [--threads 1 2]
        [--rounds 3] [--protocol corr] [--flip] [--out out/pair_stage.json]

The MobileNetV2 stand-in (``python -m corr.weights download mobilenetv2-standin``) extracts
every image of the SPair-71k split of ``--root`` once into a temporary feature cache (stage 1,
not part of the rate). Then, for each round and each ``--threads`` value (the order alternates
from round to round: 1 2, 2 1, ...), :func:`corr.eval.runner.pair_stage` matches every pair
and stores its predictions, as the evaluation does, in two states:

- ``memory``: the features in the matcher's memory, as after stage 1 of a first run; the
  reused descriptors (:mod:`corr.reuse`) emptied, so each image's descriptor is built once in
  the rate, as in a run;
- ``disk``: a fresh matcher on the on-disk cache, as a resumed or second run: each entry is
  read and verified once.

Each round records the load average before it; the result is the median and spread per
state and thread count. A speed goal lives here, never in a timed test: at least 100 pairs/s
with one thread on a quiet machine (``memory``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))  # ``speed`` importable when run as a script

from speed.timing import loadavg, machine_info  # noqa: E402
from speed.workloads import REPO, shared_dir  # noqa: E402

MOBILENET = "corr.contrib.mobilenet:mobilenetv2"
GOAL_PAIRS_PER_S = 100.0


def default_root() -> Path:
    full = shared_dir() / "data" / "minireal"
    return full if full.is_dir() else REPO / "tests" / "data" / "minireal"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/speed/pair_stage.py", description=__doc__)
    p.add_argument("--root", type=Path, default=None, help="minireal folder (default: shared's)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--protocol", default="corr")
    p.add_argument("--flip", action="store_true", help="with flip alignment")
    p.add_argument("--out", type=Path, default=REPO / "out" / "pair_stage.json")
    return p


def _one(opts, matcher, out_dir: Path, threads: int) -> tuple[int, float]:
    from corr.distributed import DistContext
    from corr.eval import runner

    state = runner.resume(opts, matcher, out_dir, lambda *_: None, DistContext())
    return runner.pair_stage(opts, matcher, state, False, DistContext(), threads)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    import corr
    from corr.distributed import DistContext
    from corr.eval import runner
    from corr.eval.plan import EvalOptions

    root = args.root or default_root()
    opts = EvalOptions(
        dataset="spair",
        root=str(root / "SPair-71k"),
        flip=args.flip,
        flip_table=str(root / "flip.json") if args.flip else None,
        geo_groups=str(root / "geo_groups.json"),
    )
    budget = 4 * 2**30
    work = Path(tempfile.mkdtemp(prefix="corr-pair-stage-"))
    cache = work / "cache"

    def matcher():
        m = corr.Matcher([MOBILENET], protocol=args.protocol, device="cpu", cache_dir=cache)
        m.cache.memory_items, m.cache.memory_bytes = 10**6, budget
        m.reuse.items, m.reuse.max_bytes = 10**6, budget
        return m

    resident = matcher()
    state = runner.resume(opts, resident, work / "extract", lambda *_: None, DistContext())
    t0 = time.perf_counter()
    report, n_items = runner.extract_stage(
        opts, resident, state.todo, False, lambda *_: None, DistContext()
    )
    extract_s = time.perf_counter() - t0
    for item in runner.image_items(state.todo, opts.flip, resident):  # all features in memory
        resident.features(item.image, item.category, mirrored=item.mirrored)
    samples: dict[str, dict[int, list[float]]] = {"memory": {}, "disk": {}}
    rounds = []
    for r in range(args.rounds):
        order = args.threads if r % 2 == 0 else args.threads[::-1]
        for threads in order:
            for state_name in ("memory", "disk"):
                m = resident if state_name == "memory" else matcher()
                m.reuse.clear()
                load = loadavg()
                n, sec = _one(opts, m, work / f"r{r}-{threads}-{state_name}", threads)
                rate = n / sec
                samples[state_name].setdefault(threads, []).append(rate)
                rounds.append(
                    {"round": r + 1, "threads": threads, "state": state_name, "pairs": n,
                     "seconds": round(sec, 4), "pairs_per_s": round(rate, 1), "loadavg_before": load}
                )  # fmt: skip
                print(
                    f"round {r + 1}, {threads} thread(s), {state_name}: {rate:.1f} pairs/s "
                    f"({n} pairs), load before {load}",
                    flush=True,
                )
    summary = {
        state_name: {
            str(t): {
                "median": round(statistics.median(v), 1),
                "min": round(min(v), 1),
                "max": round(max(v), 1),
            }
            for t, v in per.items()
        }
        for state_name, per in samples.items()
    }
    one = summary["memory"].get("1")
    result = {
        "what": "cached pair stage of corr.eval (runner.pair_stage) on minireal, pairs/s",
        "command": "python benchmarks/speed/pair_stage.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root": str(root),
        "extractor": MOBILENET,
        "protocol": args.protocol,
        "flip": args.flip,
        "images": n_items,
        "extract_s": round(extract_s, 2),
        "extract_report": report.as_dict(),
        "machine": {**machine_info(torch.device("cpu")), "loadavg_now": loadavg()},
        "rounds": rounds,
        "summary": summary,
        "goal": {
            "pairs_per_s_one_thread_memory": GOAL_PAIRS_PER_S,
            "met": None if one is None else one["median"] >= GOAL_PAIRS_PER_S,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for state_name, per in summary.items():
        for t, s in per.items():
            print(f"{state_name:>6}, {t} thread(s): {s['median']} pairs/s ({s['min']}-{s['max']})")
    print(f"json: {args.out}; load average now {loadavg()} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
