"""BoundedLRU: a cache keyed by what peers choose never outgrows its bound."""

from __future__ import annotations

from igor_p2p.bounded import BoundedLRU


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    evicted: list[str] = []
    lru: BoundedLRU[str, int] = BoundedLRU(2, on_evict=lambda k, v: evicted.append(k))
    lru["a"], lru["b"] = 1, 2
    assert lru["a"] == 1  # reading refreshes "a"
    lru["c"] = 3
    assert sorted(lru) == ["a", "c"] and evicted == ["b"]
    assert lru.evictions == 1


def test_a_million_inserts_keep_the_bound() -> None:
    lru: BoundedLRU[int, int] = BoundedLRU(1000)
    for i in range(1_000_000):
        lru[i] = i
    assert len(lru) == 1000 and 999_999 in lru and 0 not in lru


def test_pinned_keys_survive_and_snapshots_do_not_touch_recency() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(2, pinned=lambda k: k.startswith("own"))
    lru["own-1"] = 1
    lru["x"] = 2
    assert lru.items() == [("own-1", 1), ("x", 2)]
    lru["y"] = 3
    assert "own-1" in lru and "x" not in lru
    assert lru.peek("y") == 3
