"""Per-peer rate limits (the seed's A3 griefer): token buckets with bounded per-peer state.

Pure: every method takes ``now`` (seconds on any monotonic clock, e.g. ``trio.current_time()``),
so the limits are tested without sleeping. A peer's bucket starts full (``burst`` tokens) and
refills at ``rate_per_s``; a request costing more tokens than the bucket holds is refused. The
per-peer buckets live in a :class:`~igor_p2p.bounded.BoundedLRU`: a griefer inventing peer IDs
evicts old buckets instead of growing memory, and an evicted peer merely starts again with a
full bucket (at most ``burst`` extra requests, which is what an honest new peer gets anyway).

:class:`HopLimiter` caps how often one agent may *arrive* at this node within a window, so a
griefer cannot bounce an agent back and forth between nodes (each hop costs both nodes a
verification and a store write, and the agent its tick time).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from igor_p2p.bounded import BoundedLRU

DEFAULT_MAX_PEERS = 4096
"""How many peers' buckets a limiter remembers."""


@dataclass
class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; ``take`` spends them."""

    rate_per_s: float
    burst: float
    tokens: float = math.nan
    updated: float = math.nan

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError("rate_per_s must be a positive finite number")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError("burst must be a finite number >= 1")
        if math.isnan(self.tokens):
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if math.isnan(self.updated) or now < self.updated:
            self.updated = now  # first use, or a clock that went backwards: no refill
            return
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if the bucket holds them; False (nothing spent) otherwise."""
        self._refill(now)
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def available(self, now: float) -> float:
        """The tokens the bucket holds now."""
        self._refill(now)
        return self.tokens

    def spend(self, now: float, cost: float) -> None:
        """Spend ``cost`` tokens, as many as there are (a cost known only afterwards)."""
        self._refill(now)
        self.tokens = max(0.0, self.tokens - cost)

    def retry_after(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens will be there (0 if they are now)."""
        self._refill(now)
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate_per_s


@dataclass
class PeerRateLimiter:
    """One :class:`TokenBucket` per peer, at most ``max_peers`` of them remembered."""

    rate_per_s: float
    burst: float
    max_peers: int = DEFAULT_MAX_PEERS
    refused: int = 0
    _buckets: BoundedLRU[str, TokenBucket] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        TokenBucket(self.rate_per_s, self.burst)  # validates the parameters
        self._buckets = BoundedLRU(self.max_peers)

    def allow(self, peer: str, now: float, cost: float = 1.0) -> bool:
        """Whether ``peer`` may make a request costing ``cost`` now (and spend it if so)."""
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst)
            self._buckets[peer] = bucket
        if bucket.take(now, cost):
            return True
        self.refused += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class HopLimiter:
    """At most ``max_arrivals`` arrivals of one agent at this node per ``window_s`` seconds.

    Call :meth:`allow` when an offer for the agent is about to be accepted; it records the
    arrival when it allows it. State is bounded to ``max_agents`` agents (least recently seen
    evicted)."""

    max_arrivals: int = 6
    window_s: float = 60.0
    max_agents: int = DEFAULT_MAX_PEERS
    refused: int = 0
    _arrivals: BoundedLRU[str, deque[float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_arrivals < 1:
            raise ValueError("max_arrivals must be at least 1")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError("window_s must be a positive finite number")
        self._arrivals = BoundedLRU(self.max_agents)

    def recent(self, agent: str, now: float) -> int:
        """Arrivals of ``agent`` within the window ending ``now``."""
        times = self._arrivals.get(agent)
        if times is None:
            return 0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return len(times)

    def allow(self, agent: str, now: float) -> bool:
        if self.recent(agent, now) >= self.max_arrivals:
            self.refused += 1
            return False
        times = self._arrivals.get(agent)
        if times is None:
            times = self._arrivals[agent] = deque(maxlen=self.max_arrivals)
        times.append(now)
        return True
