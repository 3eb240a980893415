"""The README's commands run from a public clone: every repository path they name exists, none
reaches outside the checkout (../shared is not in a clone), and the Python examples of the
Pair section run on the bundled samples."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_commands_name_paths_that_a_clone_has():
    commands = "\n".join(_code_blocks("bash"))
    assert "../shared" not in commands, "a public clone has no ../shared"
    paths = set(re.findall(r"(?:tests/data|corr/samples|demos|benchmarks)/[\w./-]+", commands))
    assert paths  # the check is not vacuous
    # written by the commands themselves: the figures, the GPU check's wheels (prepare.sh)
    written = ("demos/out", "benchmarks/gpu/wheels")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()

    def in_a_clone(p: str) -> bool:  # a tracked file, or a folder holding one
        p = p.rstrip("./")
        return any(t == p or t.startswith(p + "/") for t in tracked)

    missing = sorted(p for p in paths if not p.startswith(written) and not in_a_clone(p))
    assert not missing, f"README commands name paths that do not exist: {missing}"


def test_the_pair_example_runs(real_mobilenet, mobilenet_feature_cache):
    (block,) = [b for b in _code_blocks("python") if "pair = m.pair(" in b]
    block = block.replace(
        'corr.Matcher(["corr.contrib.mobilenet:mobilenetv2"])',
        f'corr.Matcher(["corr.contrib.mobilenet:mobilenetv2"], cache_dir={str(mobilenet_feature_cache)!r})',
    )
    scope: dict = {}
    exec("import corr\n" + block, scope)  # noqa: S102 (the README's own example)
    assert scope["w"].warped.shape[:2] == scope["heat"].shape
    assert len(scope["points"]) == len(scope["mutual"]) > 0
