"""The per-process LRU map behind the package, store, evaluation and retraining caches."""

from __future__ import annotations

import pytest

from edgeupdate.lru import LRU


def test_a_store_past_the_capacity_drops_the_least_recently_used_entry() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1          # "a" is now the most recent; "b" the least
    cache.put("c", 3)
    assert "b" not in cache and cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_get_or_compute_computes_once_per_key_while_it_is_kept() -> None:
    calls: list[str] = []
    cache: LRU[str, str] = LRU(1)

    def compute(key: str):
        return lambda: calls.append(key) or key.upper()

    assert cache.get_or_compute("x", compute("x")) == "X"
    assert cache.get_or_compute("x", compute("x")) == "X"
    assert cache.get_or_compute("y", compute("y")) == "Y"   # evicts "x"
    assert cache.get_or_compute("x", compute("x")) == "X"
    assert calls == ["x", "y", "x"]


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity of at least 1"):
        LRU(0)
