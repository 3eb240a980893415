"""The validation during training keeps a bounded share of features in memory."""

from __future__ import annotations

from toy_training import matcher as toy_matcher

from corr.adapters import AdapterConfig, AggregationNetwork
from corr.datasets import load_pairs
from corr.train import RECIPES
from corr.train.validation import VALIDATION_MEMORY_BYTES, Validator


def test_validation_memory_is_bounded_in_bytes_not_only_in_images(minireal, tmp_path):
    """Items alone (two per validation image) would hold SPair-71k's whole validation set at
    the reference sizes, tens of GB; the byte bound is corr.eval's default 4 GB."""
    records = load_pairs("spair", minireal / "SPair-71k")
    adapter = AggregationNetwork(
        AdapterConfig(feature_dims=(16, 24), group_names=None, projection_dim=128)
    )
    v = Validator(toy_matcher(tmp_path / "cache"), adapter, records, "spair", RECIPES["spair"])
    assert VALIDATION_MEMORY_BYTES == 4 * 2**30
    assert v.matcher.cache.memory_bytes == VALIDATION_MEMORY_BYTES
    assert v.matcher.reuse.max_bytes == VALIDATION_MEMORY_BYTES
    assert v.matcher.cache.memory_items >= 2 * len(records)
