"""The library logs to logging.getLogger("corr") and never prints; the torchvision fix is
applied only where the installed pair is broken, and says so in the log."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
from torch import nn

import corr
from corr.extractors import ModuleExtractor
from corr.logs import setup_cli_logging


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_matching_prints_nothing(capsys):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1))
    m = corr.Matcher([ModuleExtractor(net, input_size=32, name="t")], device="cpu")
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    m.match(img, img, [[5.0, 5.0]])
    m.dense(img, img)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_torchvision_fix_is_logged_only_where_it_was_needed():
    plain = _run("import torchvision")
    probe = _run(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from corr._compat import ensure_torchvision_importable\n"
        "print(ensure_torchvision_importable())\n"
        "import torchvision\n"
    )
    assert probe.returncode == 0, probe.stderr
    applied = probe.stdout.strip() == "True"
    logged = "declared the torchvision::nms/qnms schemas" in probe.stderr
    if plain.returncode == 0:  # a matching torch/torchvision pair: nothing to fix, nothing said
        assert not applied and not logged
    else:  # this machine's broken pair: fixed, and the log says so
        assert "torchvision::nms does not exist" in plain.stderr
        assert applied and logged and "INFO:corr._compat" in probe.stderr


def test_cli_logging_level_comes_from_the_environment(monkeypatch, capsys):
    log = logging.getLogger("corr")
    saved = (log.level, list(log.handlers))
    try:
        monkeypatch.setenv("CORR_LOG_LEVEL", "INFO")
        setup_cli_logging()
        setup_cli_logging()  # idempotent: one handler
        assert sum(getattr(h, "_corr_cli", False) for h in log.handlers) == 1
        logging.getLogger("corr.test").info("hello %d", 7)
        logging.getLogger("corr.test").debug("hidden")
        err = capsys.readouterr().err
        assert "INFO corr.test: hello 7" in err and "hidden" not in err
        monkeypatch.setenv("CORR_LOG_LEVEL", "LOUD")
        setup_cli_logging()
        assert log.level == logging.WARNING and "not a logging level" in capsys.readouterr().err
    finally:
        log.setLevel(saved[0])
        log.handlers[:] = saved[1]


def test_library_logger_is_silent_by_default():
    handlers = logging.getLogger("corr").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


@pytest.mark.parametrize("code", [0, 2, 130])
def test_exit_cli_survives_a_ctrl_c_during_the_shutdown(code):
    """A Ctrl-C that lands while the interpreter shuts down (here: sent by an exit handler)
    neither changes the exit status nor prints a traceback. After an interrupt (130) the tool
    leaves before the shutdown; otherwise the work is done and the late Ctrl-C is ignored.
    (``sys.exit`` in their place: a KeyboardInterrupt traceback from the exit handler.)"""
    script = (
        "import atexit, os, signal, time\n"
        "from corr.logs import exit_cli\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.5)))\n"
        f"exit_cli({code})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


def test_import_torch_holds_ctrl_c_until_torch_has_loaded():
    """A Ctrl-C 50 ms into torch's import (which takes about a second) is raised only once
    torch has loaded completely; inside torch's C++ start-up it could abort the process."""
    script = (
        "import os, signal, sys, threading\n"
        "from corr.logs import import_torch\n"
        "threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    import_torch()\n"
        "except KeyboardInterrupt:\n"
        "    import torch\n"
        "    print('raised after loading', torch.zeros(2).sum().item(), flush=True)\n"
        "    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised after loading 0.0", (done.stdout, done.stderr)
