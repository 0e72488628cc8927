"""A mapping with a hard cap on its number of entries, evicting the least recently used.

Every cache keyed by something a peer can choose (a peer ID, an agent DID) must be bounded, or
a peer that invents keys grows the node's memory without limit. :class:`BoundedLRU` is the one
tool for that: reading or writing a key makes it the most recently used; inserting a new key
into a full map evicts the least recently used one (``on_evict`` is told which).

``pinned`` (optional) names keys that must never be evicted (e.g. agents this node ticks); when
every entry is pinned the map grows past ``max_entries`` rather than dropping one of them, so a
pin set must itself be bounded by something else (the node's capacity).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedLRU(MutableMapping[K, V]):
    """At most ``max_entries`` entries (plus pinned ones); least recently used goes first."""

    def __init__(
        self,
        max_entries: int,
        *,
        on_evict: Callable[[K, V], None] | None = None,
        pinned: Callable[[K], bool] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.evictions = 0
        self._on_evict = on_evict
        self._pinned = pinned
        self._data: OrderedDict[K, V] = OrderedDict()

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        if key in self._data:
            self._data.move_to_end(key)
        self._data[key] = value
        self._shrink()

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` without making it recently used."""
        return self._data.get(key, default)

    def values(self) -> list[V]:  # type: ignore[override]
        """A snapshot of the values, least recently used first (recency untouched)."""
        return list(self._data.values())

    def items(self) -> list[tuple[K, V]]:  # type: ignore[override]
        """A snapshot of the items, least recently used first (recency untouched)."""
        return list(self._data.items())

    def _shrink(self) -> None:
        while len(self._data) > self.max_entries:
            victim = self._victim()
            if victim is None:
                return  # everything left is pinned
            value = self._data.pop(victim)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(victim, value)

    def _victim(self) -> K | None:
        for key in self._data:  # least recently used first
            if self._pinned is None or not self._pinned(key):
                return key
        return None
