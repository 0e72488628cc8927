"""Log a peer's failures at most once per interval, without a traceback.

A misbehaving or flaky peer can fail thousands of streams a minute; one line per peer per
interval (with how many were suppressed since) keeps the log readable and bounded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio

DEFAULT_INTERVAL_S = 60.0
DEFAULT_MAX_PEERS = 1024


class PeerLogLimiter:
    """Remembers when each peer was last logged (at most ``max_peers`` of them, LRU)."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_peers: int = DEFAULT_MAX_PEERS,
    ) -> None:
        if interval_s < 0 or max_peers < 1:
            raise ValueError("interval_s must be >= 0 and max_peers >= 1")
        self.log = log
        self.interval_s = interval_s
        self.max_peers = max_peers
        self._last: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """peer -> (when it was last logged, failures suppressed since)."""

    def warning(self, peer: str, message: str) -> bool:
        """Log ``message`` for ``peer`` unless it was logged within the interval; True if logged."""
        now = trio.current_time()
        seen = self._last.get(peer)
        if seen is not None and now - seen[0] < self.interval_s:
            self._last[peer] = (seen[0], seen[1] + 1)
            return False
        suppressed = seen[1] if seen is not None else 0
        self._last[peer] = (now, 0)
        self._last.move_to_end(peer)
        while len(self._last) > self.max_peers:
            self._last.popitem(last=False)
        if suppressed:
            message = f"{message} ({suppressed} more from this peer not logged)"
        self.log.warning("%s", message)
        return True
