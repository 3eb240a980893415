"""Figures, the JSON + CSV files (rewritten atomically after every stage, so a killed run leaves
what it measured) and the printed table."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import Any

from .timing import loadavg, progress

WEIGHTS_NOTE = (
    "random weights (pretrained=False): forward-pass time does not depend on the weight values; "
    "'model build' is constructing the architecture, not loading a checkpoint"
)
CSV_FIELDS = ("key", "what", "value", "unit", "context", "samples")


class Report:
    """Every figure of a run with its unit and context, plus structured sections.

    ``figures[key] = {"value", "unit", "what", "context", "samples"?}``; the unit says what the
    value is (``s once``, ``s/image``, ``s/pair``, ``s total``, ``images/s``, ``pairs/s``,
    ``h total``, ``MB``, ``x``). ``sections`` holds the structured results (evaluation,
    extraction, matching, A/B rounds, ratio, extrapolation, memory).
    """

    def __init__(self, out: str | Path, command: str, config: dict, machine: dict) -> None:
        self.out = Path(out)
        self.csv = self.out.with_suffix(".csv")
        self.date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.command = command
        self.config = config
        self.machine = machine
        self.figures: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, Any] = {}
        self.done: list[str] = []

    def put(self, key: str, value: float, unit: str, what: str, context: str, samples=None) -> None:
        value = float(value)
        if unit in ("x", "MB"):
            value = round(value, 2)
        else:  # 4 decimals, and 4 significant digits for small rates (0.03652 images/s)
            value = round(value, 4) if abs(value) >= 1 else float(f"{value:.4g}")
        self.figures[key] = {
            "value": value,
            "unit": unit,
            "what": what,
            "context": context,
        }
        if samples is not None:
            self.figures[key]["samples"] = [round(float(x), 6) for x in samples]

    def as_dict(self, complete: bool) -> dict[str, Any]:
        return {
            "complete": complete,
            "stages_done": list(self.done),
            "date": self.date,
            "command": self.command,
            "note": WEIGHTS_NOTE,
            "config": self.config,
            "machine": {**self.machine, "loadavg_1_5_15_now": loadavg()},
            "stages": self.figures,
            **self.sections,
        }

    def stage_done(self, name: str) -> None:
        """Record a finished stage and rewrite the partial results."""
        self.done.append(name)
        self.write(complete=False)
        progress(f"stage done: {name} (partial results in {self.out})")

    def write(self, complete: bool) -> None:
        from corr.io import atomic_write_json, atomic_write_text
        from corr.viz import readable_by_others

        atomic_write_json(self.out, self.as_dict(complete))  # temp file + os.replace
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_FIELDS)
        for key, f in self.figures.items():
            samples = " ".join(str(x) for x in f.get("samples", []))
            w.writerow([key, f["what"], f["value"], f["unit"], f["context"], samples])
        atomic_write_text(self.csv, buf.getvalue())
        for path in (self.out, self.csv):
            readable_by_others(path)

    def table(self) -> str:
        rows = []
        for f in self.figures.values():
            v, unit = f["value"], f["unit"]
            if unit == "MB":
                value = f"{v:.0f}"
            elif unit == "x":
                value = f"{v:.2f}"
            else:
                value = f"{v:.4g}" if abs(v) < 0.1 else f"{v:.3f}"
            rows.append((f["what"], value, f["unit"], f["context"]))
        width = max(len(r[0]) for r in rows) if rows else 10
        lines = [f"{'stage':<{width}} {'value':>10}  {'unit':<9} context", "-" * (width + 70)]
        lines += [f"{w:<{width}} {v:>10}  {u:<9} {c}" for w, v, u, c in rows]
        return "\n".join(lines)
