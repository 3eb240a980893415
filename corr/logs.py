"""Logging: the library logs to ``logging.getLogger("corr")`` (and its children) and never
prints; the command-line tools print their tables and route the log to stderr.

``CORR_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``, ...) sets the level the command-line tools
show (default ``WARNING``). In your own program, configure ``logging`` as usual, e.g.
``logging.getLogger("corr").setLevel(logging.INFO)`` with a handler of your choice.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER_NAME = "corr"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (a CLI ``main`` called
    twice in one process, e.g. by tests that capture stderr, never writes to a closed stream)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_cli_logging() -> logging.Logger:
    """Send ``corr``'s log records to stderr as ``LEVEL corr.module: message`` at the level
    ``CORR_LOG_LEVEL`` names (default WARNING). Called by each command-line tool; idempotent."""
    log = logging.getLogger(LOGGER_NAME)
    name = os.environ.get("CORR_LOG_LEVEL", "WARNING").upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        level = logging.WARNING
        print(f"CORR_LOG_LEVEL={name!r} is not a logging level; using WARNING", file=sys.stderr)
    log.setLevel(level)
    if not any(getattr(h, "_corr_cli", False) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._corr_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    return log
