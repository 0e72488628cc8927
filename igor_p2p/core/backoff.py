"""How retries of the authority protocols wait: a growing, jittered delay that a network change
ends at once.

A claim that found no quorum, a COMMIT, ABORT or LEARN the peer did not answer, an OFFER the
target refused for rate: each waits ``CoreConfig.backoff(attempt, jitter)`` before it tries
again (:class:`Retries`), and after a long partition that wait has grown to many seconds. When a
peer comes back or a partition heals (the node's discovery and fault gate say so,
:meth:`Backoff.network_changed`), every wait ends at once and the retries go on from a short
wait, so liveness after heal does not depend on how long the partition lasted. A
request with a long timeout (an OFFER waits up to ``offer_timeout_s`` for its ACK) is sent
again on a network change too (:meth:`Backoff.request`): its reply may have been lost to
the partition, and the request is one the peer answers again when repeated.
"""

from __future__ import annotations

import trio

from igor_p2p.core.config import CoreConfig
from igor_p2p.core.ports import Env, PeerUnreachable, Transport
from igor_p2p.wire.codec import Message


class Backoff:
    """The retry waits of one node incarnation (shared by its claimant and messenger)."""

    def __init__(self, config: CoreConfig, env: Env) -> None:
        self.config = config
        self.env = env
        self._changed = trio.Event()
        self.generation = 0
        """How many network changes this incarnation has seen."""

    def network_changed(self) -> None:
        """A peer came back or a partition healed: every wait in progress ends now."""
        self.generation += 1
        self._changed.set()
        self._changed = trio.Event()

    def retries(self) -> Retries:
        """The waits of one retry loop."""
        return Retries(self)

    async def wait(self, attempt: int) -> None:
        """Wait before retry ``attempt`` (0-based), or until the network changes."""
        changed = self._changed
        with trio.move_on_after(self.config.backoff(attempt, self.env.rng.random())):
            await changed.wait()

    async def request(
        self, transport: Transport, peer: bytes, message: Message, timeout: float
    ) -> Message:
        """``transport.request``, sent again at once whenever the network changes before the
        reply came (only for requests a peer answers the same way when repeated)."""
        while True:
            changed = self._changed
            reply: Message | None = None
            failure: PeerUnreachable | None = None
            async with trio.open_nursery() as nursery:

                async def ask() -> None:
                    nonlocal reply, failure
                    try:
                        reply = await transport.request(peer, message, timeout)
                    except PeerUnreachable as exc:
                        failure = exc
                    nursery.cancel_scope.cancel()

                async def watch(changed: trio.Event) -> None:
                    await changed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(ask)
                nursery.start_soon(watch, changed)
            if reply is not None:
                return reply
            if failure is not None:
                raise failure


AFTER_CHANGE_ATTEMPT = 3
"""After a network change a retry series goes on from this attempt at most (0.8 to 1.6 s with a
node's 0.2 s shortest wait): short enough that liveness after heal does not depend on how long
the partition lasted, long enough that churn elsewhere (every peer coming up is a change) never
turns a retry loop into polling."""


class Retries:
    """The waits of one retry loop: each longer than the last, and short again after a network
    change. A heal is seldom one moment: the nodes' links come back one by one, so the first
    retry after a change may still meet a cut link, and the retries after it must not have
    grown to the long waits of the partition."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.attempt = 0
        self._generation = backoff.generation

    def _after_change(self) -> bool:
        if self._generation == self.backoff.generation:
            return False
        self._generation = self.backoff.generation
        self.attempt = min(self.attempt, AFTER_CHANGE_ATTEMPT)
        return True

    async def wait(self) -> None:
        self._after_change()
        await self.backoff.wait(self.attempt)
        if not self._after_change():
            self.attempt += 1
