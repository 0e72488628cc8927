"""Warm streams: idle request streams kept per (peer, protocol), and the per-peer in-flight cap.

A fresh libp2p stream costs two multistream-select round trips before its first byte (about
2 ms on loopback); :class:`~igor_p2p.net.transport.Libp2pTransport` therefore sends a peer's
next request on a stream that already carried one. The pool is bounded (streams per key, peers
kept, age) and hands back only streams that look open; the transport resets or closes what it
returns in ``stale``/``overflow``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

MAX_REQUESTS_PER_STREAM = 2**32 - 1
"""Request numbers are 4 bytes; a stream that used them all is closed, not kept."""


@dataclass
class Warm:
    """An open stream to a peer on one protocol and the number of its next request."""

    stream: INetStream
    peer: ID
    protocol: str
    next_number: int = 1
    idle_since: float = 0.0


class WarmPool:
    """Idle warm streams per (peer, protocol), bounded in streams per key and in peers."""

    def __init__(self, per_key: int, max_peers: int, max_age_s: float) -> None:
        self.per_key = per_key
        self.max_peers = max_peers
        self.max_age_s = max_age_s
        self._idle: OrderedDict[ID, dict[str, list[Warm]]] = OrderedDict()

    def take(self, peer: ID, protocol: str, stale: list[Warm]) -> Warm | None:
        """The freshest usable idle stream, or None; dead or old ones go to ``stale``."""
        by_protocol = self._idle.get(peer)
        if by_protocol is None:
            return None
        streams = by_protocol.get(protocol, [])
        now = trio.current_time()
        found = None
        while streams and found is None:
            warm = streams.pop()  # the most recently returned first
            if now - warm.idle_since <= self.max_age_s and looks_open(warm.stream):
                found = warm
            else:
                stale.append(warm)
        if not streams:
            by_protocol.pop(protocol, None)
        if not by_protocol:
            del self._idle[peer]
        return found

    def give(self, warm: Warm, overflow: list[Warm]) -> None:
        """Keep ``warm`` idle; what does not fit goes to ``overflow`` (to be closed)."""
        if self.per_key < 1 or warm.next_number >= MAX_REQUESTS_PER_STREAM:
            overflow.append(warm)
            return
        warm.idle_since = trio.current_time()
        by_protocol = self._idle.setdefault(warm.peer, {})
        self._idle.move_to_end(warm.peer)
        streams = by_protocol.setdefault(warm.protocol, [])
        streams.append(warm)
        while len(streams) > self.per_key:
            overflow.append(streams.pop(0))
        while len(self._idle) > self.max_peers:
            _, evicted = self._idle.popitem(last=False)
            for more in evicted.values():
                overflow.extend(more)

    def drain(self) -> list[Warm]:
        out = [w for by_protocol in self._idle.values() for ws in by_protocol.values() for w in ws]
        self._idle.clear()
        return out

    def idle_count(self, peer: ID | None = None) -> int:
        maps = self._idle.values() if peer is None else [self._idle.get(peer, {})]
        return sum(len(ws) for by_protocol in maps for ws in by_protocol.values())


def looks_open(stream: INetStream) -> bool:
    """Best effort: False when the stream or its connection is known to be closed."""
    muxed_stream = getattr(stream, "muxed_stream", None)
    for flag in ("closed", "recv_closed", "send_closed", "reset_received"):
        if getattr(muxed_stream, flag, False) is True:
            return False
    conn = getattr(stream, "muxed_conn", None)
    return getattr(conn, "is_closed", False) is not True


class PeerSlots:
    """At most ``limit`` requests in flight per peer; callers beyond it wait their turn."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: dict[ID, trio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def hold(self, peer: ID) -> AsyncIterator[None]:
        semaphore = self._semaphores.get(peer)
        if semaphore is None:
            semaphore = self._semaphores[peer] = trio.Semaphore(self.limit)
        try:
            async with semaphore:
                yield
        finally:
            if semaphore.value == self.limit and not semaphore.statistics().tasks_waiting:
                self._semaphores.pop(peer, None)
