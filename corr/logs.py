"""Logging: the library logs to ``logging.getLogger("corr")`` (and its children) and never
prints; the command-line tools print their tables and route the log to stderr.

``CORR_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``, ...) sets the level the command-line tools
show (default ``WARNING``). In your own program, configure ``logging`` as usual, e.g.
``logging.getLogger("corr").setLevel(logging.INFO)`` with a handler of your choice.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
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


#: the exit status of a command-line tool stopped by Ctrl-C (128 + SIGINT, as shells report it)
INTERRUPTED = 130


def exit_cli(code: int) -> None:
    """End a command-line tool with ``code``. After Ctrl-C (:data:`INTERRUPTED`) leave at once,
    past the interpreter's shutdown: a KeyboardInterrupt that cut an import short (torch takes
    about a second to load) can make that shutdown end the process by SIGINT, exit -2, after the
    "interrupted ... resume" message; measured 2026-12-05 on about 1 in 4 Ctrl-Cs in that window.
    The streams and the log handlers are flushed first; every result was already written.
    Any other ``code``: the work is done, so a Ctrl-C during the shutdown is ignored rather than
    ending the process by SIGINT (or a traceback from a library's exit handler)."""
    if code != INTERRUPTED:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: leave the handler as it is
            pass
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said
            pass
    logging.shutdown()
    os._exit(INTERRUPTED)


def import_torch() -> None:
    """Import torch with Ctrl-C held until it is loaded, then raise it as KeyboardInterrupt. A
    KeyboardInterrupt raised inside torch's C++ start-up cannot unwind: the process aborts
    (``terminate called after throwing ... KeyboardInterrupt``, exit -6), seen about 1 in 5
    times when Ctrl-C came 0.4 s after start. Outside the main thread, or once torch is loaded,
    it is a plain import."""
    if "torch" in sys.modules:
        return
    held: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    except ValueError:  # not the main thread: signals are not ours to hold
        previous = None
    try:
        importlib.import_module("torch")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
