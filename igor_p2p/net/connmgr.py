"""Bounded connectivity: a connection manager with low and high watermarks (G17).

py-libp2p 0.8.1 builds a full mesh: its ``AutoConnector`` aims for (100 + 300) / 2 connections
and dials every peerstore peer every 10–30 s and after each disconnect, and its
``ConnectionPruner`` never closes a connection that has an open stream — every connection
carries a long-lived pubsub stream, so it never prunes anything. :func:`disable_auto_connector`
turns the former off on the swarm instance; :class:`ConnectionManager` replaces both:

* **below low**: dial ``low − connected`` candidates at once (bootstrap, known peers, peers
  heard announcing; whatever the caller's ``candidates`` yields), each with an exponential,
  jittered backoff after a failure;
* **above high**: close connections down to ``low``, never one that is protected (the caller's
  ``protected`` — the gossip mesh), younger than ``grace_s``, or carrying a stream other than
  the long-lived background ones (pubsub, identify, ping) — a DHT query or a handoff is never cut;
* **explore**: every ``explore_s`` (jittered), while under high, dial one candidate marked
  ``explore`` (a peer believed down, e.g. across a healed partition) or, less often, any
  unconnected one (every minute or so), so separated groups join again and the graph stays
  random.

:func:`plan_trim`, :func:`pick_dials` and :class:`Backoff` are the sans-IO core; the manager is
the thin driver.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetConn
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from igor_p2p.net.errors import NetError
from igor_p2p.net.host import dial, disable_auto_connector, parse_multiaddr

__all__ = [
    "Backoff",
    "ConnView",
    "ConnectionManager",
    "DialCandidate",
    "Watermarks",
    "disable_auto_connector",
    "pick_dials",
    "plan_trim",
]

LOG = logging.getLogger(__name__)

BACKGROUND_PROTOCOLS = ("/meshsub/", "/floodsub/", "/ipfs/id/", "/ipfs/ping/")
"""Streams that live as long as the connection: they do not make it busy."""
RANDOM_EXPLORE_EVERY = 12
"""Exploration rounds between dials of a random unconnected (not down) peer: each new
connection costs both ends a handshake, identify and a pubsub hello."""


@dataclass(frozen=True)
class Watermarks:
    """Connection counts the manager keeps between, and how it paces itself."""

    low: int = 8
    high: int = 24
    grace_s: float = 10.0
    """A connection younger than this is never trimmed."""
    period_s: float = 1.0
    """How often the manager looks (jittered); 3× slower while between the watermarks."""
    explore_s: float = 5.0
    """How often it dials one peer believed down (jittered); ``RANDOM_EXPLORE_EVERY``× slower
    for any unconnected peer."""
    dial_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError("connection watermarks need 0 < low <= high")


@dataclass(frozen=True)
class ConnView:
    """What :func:`plan_trim` needs to know about one connected peer."""

    peer: str
    age_s: float
    protected: bool = False
    busy: bool = False


def plan_trim(conns: Sequence[ConnView], marks: Watermarks, rng: random.Random) -> list[str]:
    """Peers to disconnect: none at or under ``high``; above it, random unprotected, idle
    connections past their grace period, down to ``low``."""
    if len(conns) <= marks.high:
        return []
    excess = len(conns) - marks.low
    candidates = [c.peer for c in conns if not (c.protected or c.busy) and c.age_s >= marks.grace_s]
    rng.shuffle(candidates)
    return candidates[:excess]


@dataclass(frozen=True)
class DialCandidate:
    """A peer we may dial, with the addresses we know for it."""

    peer: str
    addrs: tuple[str, ...]
    explore: bool = False
    """Believed down or unreachable: worth an exploration dial (partition heal)."""


@dataclass
class Backoff:
    """Per-peer exponential backoff after failed dials (jittered), forgotten on success."""

    base_s: float = 0.5
    cap_s: float = 10.0
    failures: dict[str, int] = field(default_factory=dict)
    next_at: dict[str, float] = field(default_factory=dict)
    max_entries: int = 4096

    def ready(self, peer: str, now: float) -> bool:
        return self.next_at.get(peer, 0.0) <= now

    def failed(self, peer: str, now: float, rng: random.Random) -> None:
        if peer not in self.failures and len(self.failures) >= self.max_entries:
            oldest = min(self.next_at, key=self.next_at.__getitem__)
            self.succeeded(oldest)
        n = self.failures.get(peer, 0) + 1
        self.failures[peer] = n
        delay = min(self.cap_s, self.base_s * 2 ** (n - 1))
        self.next_at[peer] = now + delay * rng.uniform(0.5, 1.0)

    def succeeded(self, peer: str) -> None:
        self.failures.pop(peer, None)
        self.next_at.pop(peer, None)


def pick_dials(
    candidates: Iterable[DialCandidate],
    connected: set[str],
    dialing: set[str],
    backoff: Backoff,
    now: float,
    count: int,
    rng: random.Random,
) -> list[DialCandidate]:
    """Up to ``count`` distinct candidates that are not connected, not being dialed, have an
    address and are out of backoff, in random order."""
    if count <= 0:
        return []
    seen: dict[str, DialCandidate] = {}
    for c in candidates:
        if c.peer in seen or c.peer in connected or c.peer in dialing or not c.addrs:
            continue
        if backoff.ready(c.peer, now):
            seen[c.peer] = c
    chosen = list(seen.values())
    rng.shuffle(chosen)
    return chosen[:count]


def is_busy(conn: INetConn) -> bool:
    """True while the connection carries a stream other than the long-lived background ones."""
    try:
        streams = conn.get_streams()
    except Exception:
        return False
    for stream in streams:
        try:
            protocol = str(stream.get_protocol() or "")
        except Exception:
            protocol = ""
        if not protocol or not protocol.startswith(BACKGROUND_PROTOCOLS):
            return True
    return False


def connection_age_s(conn: INetConn, now_wall: float) -> float:
    created = getattr(conn, "_created_at", None)
    return now_wall - created if isinstance(created, int | float) else 0.0


@dataclass
class ConnStats:
    dials: int = 0
    dial_failures: int = 0
    trimmed: int = 0
    explored: int = 0


class ConnectionManager:
    """Keeps the host's connection count between the watermarks (see the module docstring)."""

    def __init__(
        self,
        host: IHost,
        marks: Watermarks,
        candidates: Callable[[], Iterable[DialCandidate]],
        protected: Callable[[], set[str]] = set,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.marks = marks
        self.candidates = candidates
        self.protected = protected
        self.rng = rng or random.Random()
        self.backoff = Backoff()
        self.stats = ConnStats()
        self._dialing: set[str] = set()
        self._wake = trio.Event()

    def connected(self) -> set[str]:
        return {str(p) for p, conns in self.host.get_network().connections.items() if conns}

    def wake(self) -> None:
        """Look again now (e.g. after learning new candidates or losing a connection)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._explore_loop, nursery)
            task_status.started()
            while True:
                await self.trim()
                count = len(self.connected())
                need = self.marks.low - count - len(self._dialing)
                for c in self._pick(need):
                    nursery.start_soon(self._dial, c)
                period = self.marks.period_s
                if self.marks.low <= count <= self.marks.high:
                    period *= 3
                self._wake = trio.Event()
                with trio.move_on_after(period * self.rng.uniform(0.8, 1.2)):
                    await self._wake.wait()

    def _pick(
        self, count: int, only: Callable[[DialCandidate], bool] | None = None
    ) -> list[DialCandidate]:
        try:
            pool = [c for c in self.candidates() if only is None or only(c)]
        except Exception:
            LOG.debug("dial candidates unavailable", exc_info=True)
            return []
        own = str(self.host.get_id())
        pool = [c for c in pool if c.peer != own]
        return pick_dials(
            pool,
            self.connected(),
            self._dialing,
            self.backoff,
            trio.current_time(),
            count,
            self.rng,
        )

    async def _explore_loop(self, nursery: trio.Nursery) -> None:
        rounds = 0
        while True:
            await trio.sleep(self.marks.explore_s * self.rng.uniform(0.7, 1.3))
            rounds += 1
            if len(self.connected()) >= self.marks.high:
                continue
            chosen = self._pick(1, lambda c: c.explore)
            if not chosen and rounds % RANDOM_EXPLORE_EVERY == 0:
                chosen = self._pick(1)
            for c in chosen:
                self.stats.explored += 1
                nursery.start_soon(self._dial, c)

    async def _dial(self, candidate: DialCandidate) -> None:
        if candidate.peer in self._dialing:
            return
        self._dialing.add(candidate.peer)
        self.stats.dials += 1
        try:
            peer_id = ID.from_base58(candidate.peer)
            addrs = [parse_multiaddr(a) for a in candidate.addrs]
            await dial(self.host, PeerInfo(peer_id, addrs), timeout_s=self.marks.dial_timeout_s)
        except (NetError, ValueError) as exc:
            self.stats.dial_failures += 1
            self.backoff.failed(candidate.peer, trio.current_time(), self.rng)
            LOG.debug("dial %s failed: %s", candidate.peer, exc)
        except Exception as exc:  # never let a dial take the manager down
            self.stats.dial_failures += 1
            self.backoff.failed(candidate.peer, trio.current_time(), self.rng)
            LOG.debug("dial %s failed: %s", candidate.peer, type(exc).__name__)
        else:
            self.backoff.succeeded(candidate.peer)
        finally:
            self._dialing.discard(candidate.peer)

    def views(self) -> list[ConnView]:
        protected = self.protected()
        now_wall = time.time()
        out = []
        for peer, conns in self.host.get_network().connections.items():
            if not conns:
                continue
            out.append(
                ConnView(
                    peer=str(peer),
                    age_s=min(connection_age_s(c, now_wall) for c in conns),
                    protected=str(peer) in protected,
                    busy=any(is_busy(c) for c in conns),
                )
            )
        return out

    async def trim(self) -> None:
        victims = plan_trim(self.views(), self.marks, self.rng)
        network: Any = self.host.get_network()
        for peer in victims:
            self.stats.trimmed += 1
            try:
                await network.close_peer(ID.from_base58(peer))
            except Exception:
                LOG.debug("closing %s failed", peer, exc_info=True)
