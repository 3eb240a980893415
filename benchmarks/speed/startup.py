"""Start-up: what a command costs before it does anything, on a small data set as much as the
pair stage itself. Each command runs in a fresh Python process (the same interpreter), three
times; the median wall time is reported with the spread, and which heavy modules it loaded."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from .timing import progress

#: modules that only some paths need (a plain import or the evaluation's help loads none)
HEAVY = ("torch", "diffusers", "timm", "gradio", "cv2", "sklearn", "matplotlib")
COMMANDS = {
    "import_corr": "import corr",
    "import_matcher": "from corr import Matcher",
    "eval_help": "import contextlib, io\nfrom corr.eval.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
    "    main(['--help'])",
}
COMMAND_LINES = {
    "import_corr": "python -c 'import corr'",
    "import_matcher": "python -c 'from corr import Matcher'",
    "eval_help": "python -m corr.eval --help",
}


def time_command(code: str, repeats: int = 3) -> dict:
    """Wall seconds of ``python -c code`` (``repeats`` fresh processes) and the heavy modules
    it left imported."""
    probe = f"\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    seconds, loaded = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", code + probe], capture_output=True, text=True, check=True
        )
        seconds.append(time.perf_counter() - t0)
        loaded = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "heavy_modules": [m for m in loaded.split(",") if m],
    }


def run_startup(bench) -> None:
    """Time :data:`COMMANDS` and put them in the report (``s once``)."""
    out = {}
    for key, code in COMMANDS.items():
        progress(f"start-up: {COMMAND_LINES[key]}")
        out[key] = res = time_command(code)
        heavy = ", ".join(res["heavy_modules"]) or "none of " + "/".join(HEAVY)
        bench.report.put(
            f"startup_{key}",
            res["median_s"],
            "s once",
            f"start-up: {COMMAND_LINES[key]}",
            f"median of 3 fresh processes ({res['min_s']}-{res['max_s']} s); loads {heavy}",
            [res["min_s"], res["median_s"], res["max_s"]],
        )
    bench.report.sections["startup"] = out
