"""The feature cache verifies every entry it reads: a wrong or damaged entry is recomputed."""

from __future__ import annotations

import logging

import numpy as np
import torch
from safetensors.torch import save_file

from corr.cache import FeatureCache, config_key
from corr.matcher import Matcher

CFG = {"class": "X", "model": "m"}


def _entry(cache: FeatureCache, ikey: str):
    return cache.entry_path(config_key(CFG), ikey)


def test_entries_record_what_made_them_and_are_verified(tmp_path, caplog):
    cache = FeatureCache(tmp_path, memory_items=0)
    maps = {"f": torch.randn(4, 3, 3)}
    cache.put("a" * 32, CFG, maps)
    got = cache.get("a" * 32, CFG)
    torch.testing.assert_close(got["f"], maps["f"].half().float())
    path = _entry(cache, "a" * 32)
    good = path.read_bytes()
    bad_entries = {
        "another image": lambda: save_file(
            {"f": torch.zeros(4, 3, 3, dtype=torch.float16)},
            str(path),
            {"format": "corr-features-1", "config_key": config_key(CFG), "image_key": "b" * 32},
        ),
        "no record": lambda: save_file({"f": torch.zeros(4, 3, 3, dtype=torch.float16)}, str(path)),
        "NaN": lambda: save_file(
            {"f": torch.full((4, 3, 3), float("nan"), dtype=torch.float16)},
            str(path),
            {"format": "corr-features-1", "config_key": config_key(CFG), "image_key": "a" * 32},
        ),
        "garbage": lambda: path.write_bytes(b"\x00" * 64),
    }
    for what, write in bad_entries.items():
        write()
        with caplog.at_level(logging.WARNING, logger="corr"):
            assert cache.get("a" * 32, CFG) is None, what
        assert "discarded" in caplog.text and not path.exists(), what
        caplog.clear()
        path.write_bytes(good)


def test_a_damaged_entry_is_recomputed_by_the_matcher(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    m = Matcher(["dinov2-tiny"], pretrained=False, cache_dir=tmp_path, memory_cache=0)
    want = m.features(img).maps[0]["dino"]
    (entry,) = tmp_path.rglob("*.safetensors")
    save_file({"dino": torch.zeros(48, 12, 12, dtype=torch.float16)}, str(entry))  # wrong content
    fresh = Matcher(["dinov2-tiny"], pretrained=False, cache_dir=tmp_path, memory_cache=0)
    torch.testing.assert_close(fresh.features(img).maps[0]["dino"], want)
    assert fresh.cache.misses == 1  # recomputed, and written again
    assert entry.exists()


def test_a_damaged_path_index_entry_costs_one_decode_not_a_wrong_answer(tmp_path):
    """The path index (file -> image key) is only a shortcut: a damaged entry is ignored, the
    file is decoded again and its features are found under their content key."""
    from PIL import Image

    img = np.random.default_rng(1).integers(0, 255, (30, 44, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    cache_dir = tmp_path / "cache"
    m = Matcher(["dinov2-tiny"], pretrained=False, cache_dir=cache_dir, memory_cache=0)
    want = m.features(path).maps[0]["dino"]
    (index,) = (cache_dir / "paths").rglob("*.json")
    for garbage in (b"{not json", b'{"key": "k"}', b"[]", b'{"key": "k", "width": "w"}', b""):
        index.write_bytes(garbage)
        fresh = Matcher(["dinov2-tiny"], pretrained=False, cache_dir=cache_dir, memory_cache=0)
        got = fresh.features(path)
        assert (got.width, got.height) == (44, 30), garbage
        assert torch.equal(got.maps[0]["dino"], want), garbage
        assert fresh.cache.misses == 0, garbage  # the features themselves came from the cache


def test_an_entry_is_scanned_once_per_cache_until_its_file_changes(tmp_path, monkeypatch, caplog):
    """The bytes of an entry this cache wrote or verified are not checksummed again on the next
    read (the pair stage re-reads entries the memory could not keep); a file changed since
    (another inode, size or mtime) is verified again, and a fresh cache verifies once."""
    import os

    import corr.cache

    calls = []
    real = corr.cache.maps_crc32
    monkeypatch.setattr(corr.cache, "maps_crc32", lambda maps: calls.append(1) or real(maps))
    cache = FeatureCache(tmp_path, memory_items=0)
    maps = {"f": torch.randn(4, 3, 3)}
    cache.put("a" * 32, CFG, maps)
    assert len(calls) == 1  # the checksum it records
    for _ in range(3):
        torch.testing.assert_close(cache.get("a" * 32, CFG)["f"], maps["f"].half().float())
    assert len(calls) == 1
    fresh = FeatureCache(tmp_path, memory_items=0)
    fresh.get("a" * 32, CFG)
    fresh.get("a" * 32, CFG)
    assert len(calls) == 2
    path = _entry(cache, "a" * 32)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the maps, same size
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    with caplog.at_level(logging.WARNING, logger="corr"):
        assert fresh.get("a" * 32, CFG) is None
    assert "checksum" in caplog.text and len(calls) == 3


def test_infinite_values_are_found_among_finite_ones(tmp_path, caplog):
    """Finite values are checked through the float32 sum of the fp16 maps: one infinity, or
    +inf and -inf together, among the largest finite fp16 values is still found."""
    for bad in ([float("inf")], [float("inf"), float("-inf")], [float("nan")]):
        t = torch.full((4, 3, 3), 65504.0, dtype=torch.float16)
        t.view(-1)[: len(bad)] = torch.tensor(bad, dtype=torch.float16)
        cache = FeatureCache(tmp_path, memory_items=0)
        cache.put("c" * 32, CFG, {"f": t})
        with caplog.at_level(logging.WARNING, logger="corr"):  # a fresh cache verifies it
            assert FeatureCache(tmp_path, memory_items=0).get("c" * 32, CFG) is None, bad
        assert "NaN or infinite" in caplog.text, bad
        caplog.clear()
    ok = torch.full((4, 3, 3), 65504.0, dtype=torch.float16)
    cache.put("d" * 32, CFG, {"f": ok})
    assert FeatureCache(tmp_path, memory_items=0).get("d" * 32, CFG) is not None
