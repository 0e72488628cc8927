"""Per-peer limits on the authority protocols' requests (the seed's A3 griefer).

A peer can make this node verify signatures, fetch modules, write to its store and send
requests of its own. :class:`LimitedTransport` wraps the core's transport port: every request a
peer sends goes through :class:`RequestLimits` before the core sees it.

- OFFERs, STATUS queries and witness requests (PREPARE, ACCEPT, LEARN) each have a per-peer
  token bucket; a request over the limit is answered REFUSED ``RATE_LIMITED`` (the sender
  backs off; nothing is written, no budget is charged).
- One agent may *arrive* here (an OFFER for it) at most ``arrivals_per_min`` times a minute, so
  no peer can bounce an agent between nodes: an OFFER beyond that is REJECTed
  ``POLICY_DENIED`` with the reason.

Refusals are counted (``igor node status`` → ``limits``) and logged once per peer per
interval, without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from igor_p2p.core.ports import Handler, Transport
from igor_p2p.logs import get_logger
from igor_p2p.net.ratelimit import HopLimiter, PeerRateLimiter
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Accept,
    Learn,
    Offer,
    Prepare,
    Refused,
    RefusedCode,
    Reject,
    RejectCode,
    Status,
)

log = get_logger(__name__)

LOG_INTERVAL_S = 60.0


@dataclass
class RequestLimits:
    """The limits and their counters; ``now`` is any monotonic clock in seconds."""

    me: bytes
    now: Callable[[], float]
    offers: PeerRateLimiter = field(default_factory=lambda: PeerRateLimiter(10.0, 50.0))
    status: PeerRateLimiter = field(default_factory=lambda: PeerRateLimiter(20.0, 200.0))
    witness: PeerRateLimiter = field(default_factory=lambda: PeerRateLimiter(100.0, 1000.0))
    arrivals: HopLimiter = field(default_factory=lambda: HopLimiter(120, 60.0))
    _logged: dict[str, float] = field(default_factory=dict)

    def check(self, sender: bytes, message: Message) -> Message | None:
        """None when ``message`` may go to the core, else the answer that refuses it."""
        peer = sender.hex()
        now = self.now()
        limiter = self._limiter(message)
        if limiter is not None and not limiter.allow(peer, now):
            self._log(peer, now, f"{message.TYPE} over the per-peer rate limit")
            return Refused(self.me, RefusedCode.RATE_LIMITED, f"too many {message.TYPE} requests")
        if isinstance(message, Offer) and not self.arrivals.allow(message.agent, now):
            self._log(peer, now, f"{message.agent} arrives too often")
            return Reject(
                self.me,
                message.agent,
                message.migration_id,
                RejectCode.POLICY_DENIED,
                f"this agent arrived here {self.arrivals.max_arrivals} times in the last "
                f"{self.arrivals.window_s:g} s",
            )
        return None

    def _limiter(self, message: Message) -> PeerRateLimiter | None:
        if isinstance(message, Offer):
            return self.offers
        if isinstance(message, Status):
            return self.status
        if isinstance(message, Prepare | Accept | Learn):
            return self.witness
        return None  # COMMIT, ABORT, GET_MODULE answer a handoff this node takes part in

    def _log(self, peer: str, now: float, what: str) -> None:
        last = self._logged.get(peer)
        if last is not None and now - last < LOG_INTERVAL_S:
            return
        if len(self._logged) > 4096:
            self._logged.clear()
        self._logged[peer] = now
        log.info("request refused", peer=peer[:16], step=what)

    def to_json(self) -> dict[str, Any]:
        return {
            "offers_refused": self.offers.refused,
            "status_refused": self.status.refused,
            "witness_refused": self.witness.refused,
            "arrivals_refused": self.arrivals.refused,
        }


class LimitedTransport:
    """The core's :class:`~igor_p2p.core.ports.Transport`, with :class:`RequestLimits` in front
    of the requests it serves."""

    def __init__(self, inner: Transport, limits: RequestLimits) -> None:
        self.inner = inner
        self.limits = limits
        self.me = inner.me

    def serve(self, handler: Handler) -> None:
        async def limited(sender: bytes, message: Message) -> Message:
            refusal = self.limits.check(sender, message)
            if refusal is not None:
                return refusal
            return await handler(sender, message)

        self.inner.serve(limited)

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        return await self.inner.request(peer, message, timeout)
