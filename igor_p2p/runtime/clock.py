"""The node's clocks: wall time (which a fault can skew) and the shared monotonic clock."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class NodeClock:
    """Wall clock with an injectable offset; ``mono_ns`` is never skewed.

    Safety never depends on either clock: epochs are the fencing tokens. Timeouts (liveness)
    use trio's clock; histories use ``mono_ns`` so intervals from processes on one host compare.
    """

    offset_ns: int = 0

    def wall_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    @staticmethod
    def mono_ns() -> int:
        return time.monotonic_ns()
