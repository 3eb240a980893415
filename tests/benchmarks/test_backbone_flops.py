"""benchmarks/backbone_flops.py counts what a ViT costs by the formula, on the meta device."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "backbone_flops.py"


def _module():
    spec = importlib.util.spec_from_file_location("backbone_flops", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_vit_flops_match_the_formula():
    mod = _module()
    res = mod.count("dinov3-tiny", {"input_size": 160, "embed_dim": 48, "depth": 2})
    assert res["maps"] == {"dino": [48, 10, 10]}
    n, d, patches = 105, 48, 100  # tokens (class + 4 registers + 10 x 10), width
    per_block = 2 * n * d * (3 * d + d + 2 * 4 * d) + 2 * 2 * n * n * d  # linears + attention
    patch_embed = 2 * patches * d * 3 * 16 * 16
    assert res["flops"] == 2 * per_block + patch_embed


def test_sd_rows_count_only_what_runs():
    mod = _module()
    full = mod.count("sd-tiny-cleandift", {"input_size": 128, "layers": (2, 5, 8)})
    early = mod.count("sd-tiny-cleandift", {"input_size": 128, "layers": (2,)})
    assert early["maps"] == {"sd2": [48, 2, 2]}
    assert 0 < early["flops"] < full["flops"]  # the UNet stops after the last hooked layer


def _backbone_table() -> dict[str, tuple[str, int]]:
    """The README's backbone table: each backbone name -> (its line, its place among the line's
    backbones); ``dinov2_vits14`` / ``vitb14`` is written short for ``dinov2_vitb14``."""
    text = (SCRIPT.parents[1] / "README.md").read_text()
    section = text.split("\n## Backbones\n", 1)[1].split("\n## ", 1)[0]
    names: dict[str, tuple[str, int]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, *more = re.findall(r"`([^`]+)`", line.split("|")[1])
        family = first[: first.index("_") + 1] if "_" in first else ""
        for place, name in enumerate([first, *(family + m for m in more)]):
            assert name not in names, f"{name} is in two lines of the README's table"
            names[name] = (line, place)
    return names


def test_the_readme_table_names_every_row_and_shows_its_count():
    """Every backbone the script counts is in the README's table, and the small ones (fast to
    count on the meta device) show, at their place in their line, the GFLOPs the script counts
    today."""
    mod = _module()
    table = _backbone_table()
    missing = sorted({spec for _row, spec, _options, _what in mod.ROWS} - set(table))
    assert not missing, f"backbones counted but not in the README's table: {missing}"
    for name in ("dinov2_vits14", "dinov2_vitb14_reg", "dinov3_vits16"):
        options = next(r[2] for r in mod.ROWS if r[1] == name)
        gflops = f"{round(mod.count(name, options)['gflops']):,}"
        line, place = table[name]
        figures = [f.strip() for f in line.split("|")[3].split("/")]
        assert len(figures) == sum(1 for n, (ln, _) in table.items() if ln == line), line
        assert figures[place] == gflops, (name, figures, gflops)
