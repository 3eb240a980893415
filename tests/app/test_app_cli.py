"""``python -m corr.app``: one default per option in ``--help``, and the start line is the
command's output, not a WARNING."""

from __future__ import annotations

import logging
import re
import types

import pytest

from corr.app import __main__ as app_main


def _help(capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        app_main.main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _option_help(text: str) -> dict[str, str]:
    """option -> its help text (joined lines), from argparse's --help output."""
    out: dict[str, str] = {}
    current = None
    for line in text.split("options:", 1)[1].splitlines():
        m = re.match(r"\s{2}(-[-\w]+(?:, --[-\w]+)?)(.*)", line)
        if m:
            current = m.group(1).split(", ")[-1]
            out[current] = m.group(2)
        elif current:
            out[current] += " " + line.strip()
    return out


def test_help_gives_each_default_once(capsys):
    options = _option_help(_help(capsys))
    for opt in ("--backbone", "--device", "--host", "--port", "--max-display"):
        assert options[opt].count("default") == 1, (opt, options[opt])
    assert "default: sd-dino when its weights are here, else mobilenet" in options["--backbone"]
    assert "None" not in options["--backbone"]
    assert "(default: 7860)" in options["--port"]


def test_start_line_is_output_not_a_warning(monkeypatch, capsys, caplog):
    launched = {}

    class FakeBlocks:
        def launch(self, **kw):
            launched.update(kw)

    class FakeApp:
        def __init__(self, **kw):
            self.kw = kw

    fake_ui = types.ModuleType("corr.app.ui")
    fake_ui.build_blocks = lambda app: FakeBlocks()
    fake_ui.theme = lambda: None
    monkeypatch.setitem(__import__("sys").modules, "corr.app.ui", fake_ui)
    monkeypatch.setattr(app_main, "DemoApp", FakeApp)
    monkeypatch.delenv("CORR_LOG_LEVEL", raising=False)
    with caplog.at_level(logging.DEBUG, logger="corr"):
        app_main.launch(["--port", "8123", "--host", "0.0.0.0", "--device", "cpu"])
    assert launched["server_port"] == 8123 and launched["server_name"] == "0.0.0.0"
    captured = capsys.readouterr()
    assert "corr.app: serving on http://0.0.0.0:8123" in captured.out
    assert "WARNING" not in captured.err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
