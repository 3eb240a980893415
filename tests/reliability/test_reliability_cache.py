"""Issue 14.4 and 14.7c: a cache entry of the wrong shape or with damaged bytes is discarded with
a warning and recomputed (the figures do not change); the temporary files of killed writes are
removed when a cache or a run folder is next opened, those of live writers are left alone.
Issue 23.10 and 23.11: without ``shapes.json`` an entry is recomputed, not trusted; two runs
sharing a cache extract each image once (per-entry claims); identical features give identical
files in every process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from fault_points import HERE, eval_args, start_eval
from safetensors import safe_open
from safetensors.torch import save_file

from corr.cache import FeatureCache, config_key, maps_crc32
from corr.eval.cli import main
from corr.io import STALE_TMP_SECONDS, atomic_write_bytes, host_name, remove_stale_temporaries

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")


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


def test_without_shapes_json_an_entry_of_another_shape_is_recomputed(minireal, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    assert main([*eval_args(minireal, first, limit=2), "--cache-dir", str(cache)]) == 0
    want = json.loads((first / "results.json").read_text())["results"]
    entries = sorted(cache.rglob("*.safetensors"))
    for entry in entries:  # every entry forged: self-consistent records, other shapes
        with safe_open(str(entry), framework="pt") as f:
            meta = f.metadata()
            maps = {k: f.get_tensor(k)[:, ::2, ::2].contiguous() for k in f.keys()}
        meta["shapes"] = json.dumps({k: list(v.shape) for k, v in sorted(maps.items())})
        meta["crc32"] = str(maps_crc32(maps))
        save_file(maps, str(entry), meta)
    shapes = entries[0].parents[1] / "shapes.json"
    shapes.unlink()  # nothing left to verify the entries' shapes against
    again = tmp_path / "again"
    with caplog.at_level(logging.WARNING, logger="corr"):
        assert main([*eval_args(minireal, again, limit=2), "--cache-dir", str(cache)]) == 0
    assert json.loads((again / "results.json").read_text())["results"] == want
    # the first entry read is recomputed (and gives shapes.json); the others fail against it
    assert caplog.text.count(f"not used: {shapes} is missing") == 1
    assert caplog.text.count("discarded: its maps") == len(entries) - 1
    assert shapes.exists()  # written again, before the recomputed entry


def _shared_run(minireal, tmp_path, name: str, env: dict):
    args = eval_args(minireal, tmp_path / name, limit=6)
    args[args.index("--extractor") + 1] = "counting_extractor:counting"
    return start_eval("none", 0, [*args, "--cache-dir", str(tmp_path / "cache")], env=env)


def test_two_runs_sharing_a_cache_extract_each_image_once(minireal, tmp_path):
    log, barrier = tmp_path / "extracted.log", tmp_path / "barrier"
    barrier.mkdir()
    env = dict(
        os.environ,
        PYTHONPATH=str(HERE),
        CORR_TEST_EXTRACT_LOG=str(log),
        CORR_TEST_SECONDS="0.3",
        CORR_TEST_BARRIER=str(barrier),
        CORR_TEST_PARTIES="2",
    )
    runs = [_shared_run(minireal, tmp_path, name, env) for name in ("a", "b")]
    done = [(r.wait(timeout=300), *r.communicate()) for r in runs]
    assert [rc for rc, _, _ in done] == [0, 0], done
    lines = log.read_text().split()
    pids, images = lines[0::2], lines[1::2]
    n_images = len(sorted((tmp_path / "cache").rglob("*.safetensors")))
    assert len(images) == len(set(images)) == n_images  # each image extracted once in total
    assert len(set(pids)) == 2  # and both processes did part of it
    outputs = " ".join(out for _, out, _ in done)
    assert "by another process" in outputs  # what the other process wrote was waited for
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("a", "b"))
    assert a["results"] == b["results"]


_WRITE_ENTRY = """
import sys, torch
from corr.cache import FeatureCache
torch.manual_seed(0)
maps = {"b": torch.randn(8, 6, 6), "a": torch.randn(4, 3, 3), "c": torch.randn(2, 6, 6)}
FeatureCache(sys.argv[1]).put("ab" * 16, {"model": "m", "size": 3}, maps)
"""


def test_identical_features_give_identical_files_in_every_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parents[1]))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITE_ENTRY, str(tmp_path / str(i))], env=env)
        for i in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    files = [sorted((tmp_path / str(i)).rglob("*.safetensors")) for i in range(2)]
    assert all(len(f) == 1 for f in files)
    data = [f[0].read_bytes() for f in files]
    # the metadata in sorted order, not in a per-process hash map's (6 keys: 720 orders)
    assert data[0] == data[1]
    cache = FeatureCache(tmp_path / "0", memory_items=0)
    assert cache.get("ab" * 16, {"model": "m", "size": 3})["b"].shape == (8, 6, 6)


def test_claims_of_dead_processes_are_taken_over_live_ones_waited_for(tmp_path):
    from corr.io import claim_path

    cfg = {"model": "m"}
    cache = FeatureCache(tmp_path, memory_items=0)
    entry = cache.entry_path(config_key(cfg), "cd" * 16)
    claim = claim_path(entry)
    claim.parent.mkdir(parents=True)
    maps = {"f": torch.ones(2, 3, 3)}
    # a claim left by a killed process: taken over, and removed when the entry is written
    claim.write_text(json.dumps({"pid": _dead_pid(), "host": host_name(), "time": time.time()}))
    assert cache.claim("cd" * 16, cfg) and json.loads(claim.read_text())["pid"] == os.getpid()
    cache.put("cd" * 16, cfg, maps)
    assert entry.exists() and not claim.exists()
    # a running process's claim: skipped, and waited for until its entry appears
    entry.unlink()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(json.dumps({"pid": owner.pid, "host": host_name(), "time": time.time()}))
        assert not cache.claim("cd" * 16, cfg)
        writer = threading.Timer(0.5, lambda: atomic_write_bytes(entry, b"x"))
        writer.start()
        start = time.monotonic()
        assert cache.wait_for_entries({"item": [("cd" * 16, cfg)]}, poll=0.05) == []
        assert time.monotonic() - start >= 0.4
        # ... or, when its owner dies without writing it, handed back to be computed here
        entry.unlink()
        owner.kill()
        owner.wait()
        assert cache.wait_for_entries({"item": [("cd" * 16, cfg)]}, poll=0.05) == ["item"]
    finally:
        owner.kill()
        owner.wait()
    FeatureCache(tmp_path)  # opening a cache removes the claims of dead processes
    assert not claim.exists()


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
