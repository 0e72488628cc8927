"""How retries of the authority protocols wait: a growing, jittered delay that a network change
ends at once.

A claim that found no quorum, a COMMIT, ABORT or LEARN the peer did not answer, an OFFER the
target refused for rate: each waits ``CoreConfig.backoff(attempt, jitter)`` before it tries
again, and after a long partition that wait has grown to many seconds. When a peer comes back or
a partition heals (the node's discovery and fault gate say so, :meth:`Backoff.network_changed`),
every wait ends at once, so liveness after heal does not depend on how long the partition
lasted.
"""

from __future__ import annotations

import trio

from igor_p2p.core.config import CoreConfig
from igor_p2p.core.ports import Env


class Backoff:
    """The retry waits of one node incarnation (shared by its claimant and messenger)."""

    def __init__(self, config: CoreConfig, env: Env) -> None:
        self.config = config
        self.env = env
        self._changed = trio.Event()

    def network_changed(self) -> None:
        """A peer came back or a partition healed: every wait in progress ends now."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, attempt: int) -> None:
        """Wait before retry ``attempt`` (0-based), or until the network changes."""
        changed = self._changed
        with trio.move_on_after(self.config.backoff(attempt, self.env.rng.random())):
            await changed.wait()
