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
the partition, and the request is one the peer answers again when repeated. An OFFER is also
sent again, beside the first, when its ACK is late (``offer_resend_s``): a message lost on the
target's side of the network, or a heal there, is not a change this node can see.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
        self,
        transport: Transport,
        peer: bytes,
        message: Message,
        timeout: float,
        *,
        resend_after_s: float | None = None,
        settles: Callable[[Message], bool] = lambda reply: True,
    ) -> Message:
        """``transport.request`` for a request the peer answers the same way when repeated,
        sent again — beside the attempts still waiting — whenever the network changes before
        a reply came and, with ``resend_after_s``, when no reply came for that long (then
        twice as long, …; at most :data:`MAX_ATTEMPTS` at once): the reply, or the request,
        may have been lost, and only the peer's side of the network may have changed.

        The first reply that ``settles`` is returned. Others (a repeat the peer refused
        because it is still busy with the first) count only when no attempt is left: then
        the last of them is returned, or the last failure raised."""
        outcomes_in, outcomes = trio.open_memory_channel[Message | PeerUnreachable | None](math.inf)

        async def ask() -> None:
            try:
                outcome: Message | PeerUnreachable = await transport.request(peer, message, timeout)
            except PeerUnreachable as exc:
                outcome = exc
            outcomes_in.send_nowait(outcome)

        async def watch_changes() -> None:
            while True:
                await self._changed.wait()
                outcomes_in.send_nowait(None)  # None: the network changed

        answer: Message | None = None
        failure: PeerUnreachable | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_changes)
            nursery.start_soon(ask)
            running, wait = 1, resend_after_s
            while running:
                resend_in = wait if wait is not None and running < MAX_ATTEMPTS else math.inf
                with trio.move_on_after(resend_in) as quiet:
                    outcome = await outcomes.receive()
                if quiet.cancelled_caught or (outcome is None and running < MAX_ATTEMPTS):
                    nursery.start_soon(ask)
                    running += 1
                    if quiet.cancelled_caught and wait is not None:
                        wait *= 2
                    continue
                if outcome is None:
                    continue
                running -= 1
                if isinstance(outcome, PeerUnreachable):
                    failure = outcome
                    continue
                answer = outcome
                if settles(outcome):
                    break
            nursery.cancel_scope.cancel()
        if answer is not None:
            return answer
        assert failure is not None
        raise failure


MAX_ATTEMPTS = 4
"""Most attempts of one request waiting at once (each may carry an agent's whole state)."""


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
