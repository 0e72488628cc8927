"""User-space fault injection inside one node: partitions, /igor message faults, clock offset.

There is no iptables/netem on the test machines, so every fault is injected by the node itself.
One :class:`FaultGate` per node; the admin API configures it at runtime, the testnet harness
drives the admin API.

**Partitions cut links, not information flow** (exactly like Jepsen's network partitions). While
peer P is blocked, *this node* has no connection to P at all: existing connections are closed,
outbound dials and streams to P fail fast with :class:`PartitionedPeer`, inbound connections
from P are refused before any stream is served, and an inbound stream from P is reset before its
handler runs. This covers every protocol on the connection (our ``/igor/*`` streams, Kademlia,
gossipsub, identify, ping) and every dialer, including py-libp2p's own (DHT queries, gossip,
identify push, the ``AutoConnector`` that redials peerstore peers after a disconnect). Messages
that a third node relays (gossip forwarded by C between A and B) are legitimate A–C and C–B
traffic and still flow. Each node enforces only its own list: the partition is symmetric when
the harness tells both sides, one-way when only one side is told (then the told side refuses
every connection, so no connection survives in either direction, but the untold side still
*tries*: its dials fail, or succeed and are closed at once by the told side).

G14 (py-libp2p has no peer-ID connection gate; ``connection_gate.py`` filters IP addresses
only, useless on loopback): :meth:`FaultGate.attach` wraps, on that host's swarm instance only,
``add_conn`` (the one place every connection, inbound or outbound, of every transport is
registered, before any stream is accepted or any notifee hears of it), the dial entry points
(``dial_peer``, ``dial_peer_replacement``, ``dial_addr``, ``dial_addr_as_responder``) and
``new_stream``, and installs a stream handler in front of the host's (``set_stream_handler``).
:meth:`FaultGate.detach` restores them.

**Message faults** apply only to frames written by :func:`igor_p2p.net.framing.write_frame` /
``write_message`` with ``gate=`` (our ``/igor/*`` protocols): drop, duplicate, delay (sleep
before sending), reorder (hold a frame until the next one on the same stream has been sent, or
until ``reorder_timeout_ms``). Each remote peer gets its own RNG seeded from
``(seed, peer)``, so a seeded run is reproducible for a given order of frames per peer.
Reorder needs the gate to be running (:meth:`FaultGate.running`) for its timeout flush.

**Clock**: the gate sets the ``offset_ns`` of the node's clock (``runtime.clock.NodeClock``).

Every applied fault increments :meth:`FaultGate.stats` and is reported to ``on_fault(kind,
detail)``; a failing callback is logged, never propagated into the data path.
"""

import contextlib
import inspect
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from libp2p.abc import IHost, IMuxedConn, INetConn, INetStream
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from igor_p2p.net.errors import DialFailed, InvalidFaultSpec, InvalidPeerId
from igor_p2p.net.handlers import reset_quietly
from igor_p2p.net.keys import public_key_from_peer_id


class PartitionedPeer(DialFailed, SwarmException):
    """The fault gate cuts this peer off (a test partition): no dial, stream or connection.

    Also a ``SwarmException`` so that py-libp2p code that dials on its own (DHT queries, gossip,
    identify, the auto-connector) handles the refusal like any failed dial instead of crashing.
    """


LOG = logging.getLogger(__name__)

FaultCallback = Callable[[str, dict[str, Any]], None]
Send = Callable[[bytes], Awaitable[None]]

# Every counter :meth:`FaultGate.stats` reports (always present, 0 until it happens).
FAULT_KINDS: tuple[str, ...] = (
    "block",  # peers added to the block list
    "unblock",  # peers removed from it (unblock or heal)
    "closed_connection",  # an existing connection to a peer closed by block()
    "refused_dial",  # an outbound dial or new_stream to a blocked peer refused
    "refused_connection",  # a connection with a blocked peer refused at registration
    "reset_stream",  # an inbound stream from a blocked peer reset before its handler
    "drop",
    "duplicate",
    "delay",
    "reorder",  # a frame held back to be sent after the next one
    "reorder_flush",  # a held frame sent by its timeout (no next frame came)
    "reorder_lost",  # a held frame that could not be sent (the stream died)
    "messages_cleared",  # message faults lifted (clear_message_faults while some were set)
    "clock_offset",
)

CLOSE_TIMEOUT_S = 5.0
_PATCHED_SWARM_METHODS = (
    "add_conn",
    "dial_peer",
    "dial_peer_replacement",
    "dial_addr",
    "dial_addr_as_responder",
    "new_stream",
)


class OffsetClock(Protocol):
    """The part of ``igor_p2p.runtime.clock.NodeClock`` the gate drives."""

    offset_ns: int


@dataclass
class _OwnClock:
    offset_ns: int = 0


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidFaultSpec(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class MessageFaults:
    """Faults applied to outbound ``/igor/*`` frames; ``peers=None`` means every peer."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: int = 0
    reorder: bool = False
    peers: frozenset[str] | None = None
    seed: int | None = None
    reorder_probability: float = 1.0  # with reorder=True: chance that a frame is held back
    reorder_timeout_ms: int = 200  # a held frame is sent anyway after this long
    kinds: frozenset[str] | None = None
    """Only requests of these message types (``COMMIT``, ``OFFER``, …) are dropped, whole,
    before they are sent (:meth:`FaultGate.drops_request`); the frame faults above then apply
    to no frame. ``None``: frame faults on every frame."""

    def __post_init__(self) -> None:
        _probability("drop", self.drop)
        _probability("duplicate", self.duplicate)
        _probability("reorder_probability", self.reorder_probability)
        for name in ("delay_ms", "reorder_timeout_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidFaultSpec(f"{name} must be an int >= 0, got {value!r}")
        if self.reorder_timeout_ms == 0 and self.reorder:
            raise InvalidFaultSpec("reorder needs reorder_timeout_ms > 0")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidFaultSpec("seed must be an int or None")
        if self.peers is not None:
            object.__setattr__(self, "peers", parse_peer_ids(self.peers))
        if self.kinds is not None:
            if isinstance(self.kinds, str | bytes) or not all(
                isinstance(k, str) and 0 < len(k) <= 32 for k in self.kinds
            ):
                raise InvalidFaultSpec("kinds must be message type names")
            object.__setattr__(self, "kinds", frozenset(self.kinds))

    def applies_to(self, peer_id: str) -> bool:
        return self.peers is None or peer_id in self.peers


def parse_peer_ids(peer_ids: Iterable[str]) -> frozenset[str]:
    """The set of ``peer_ids`` (node IDs are Ed25519 identity peer IDs, base58), or
    :class:`InvalidPeerId` for any other string."""
    if isinstance(peer_ids, str | bytes):
        raise InvalidPeerId("expected an iterable of peer IDs, not a single string")
    out = set()
    for peer in peer_ids:
        public_key_from_peer_id(peer)  # InvalidPeerId unless an Ed25519 identity peer ID
        out.add(str(peer))
    return frozenset(out)


@dataclass
class _StreamSlot:
    """Per-stream reorder state: one held frame at most; the lock keeps writes whole."""

    lock: trio.Lock = field(default_factory=trio.Lock)
    held: list[bytes] | None = None  # the held frame, once per copy (duplicate)
    held_send: Send | None = None
    generation: int = 0
    users: int = 0


class FaultGate:
    """One node's fault injector: partitions (G14), message faults, clock offset."""

    def __init__(
        self, *, clock: OffsetClock | None = None, on_fault: FaultCallback | None = None
    ) -> None:
        self.clock: OffsetClock = clock if clock is not None else _OwnClock()
        self.on_fault = on_fault
        self._blocked: frozenset[str] = frozenset()
        self._faults: MessageFaults | None = None
        self._rngs: dict[str, random.Random] = {}
        self._slots: dict[object, _StreamSlot] = {}
        self._counts: Counter[str] = Counter()
        self._hooks: _SwarmHooks | None = None
        self._nursery: trio.Nursery | None = None

    # ----- lifecycle -------------------------------------------------------------------------

    def attach(self, host: IHost) -> None:
        """Install the partition hooks on ``host``'s swarm (one host per gate)."""
        if self._hooks is not None:
            raise RuntimeError("this FaultGate is already attached to a host")
        network = host.get_network()
        if not isinstance(network, Swarm):
            raise TypeError(f"cannot gate a {type(network).__name__}; need a libp2p Swarm")
        self._hooks = _SwarmHooks(self, network)
        self._hooks.install()

    def detach(self) -> None:
        """Remove the hooks (the block list is kept but no longer enforced)."""
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None

    @asynccontextmanager
    async def running(self, host: IHost | None = None) -> AsyncIterator["FaultGate"]:
        """Attach to ``host`` (if given) and run the reorder timers for the block's duration."""
        if self._nursery is not None:
            raise RuntimeError("this FaultGate is already running")
        if host is not None:
            self.attach(host)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield self
                finally:
                    self._nursery = None
                    nursery.cancel_scope.cancel()
        finally:
            self._slots.clear()
            if host is not None:
                self.detach()

    # ----- counters and reporting --------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """How many faults of each kind (:data:`FAULT_KINDS`) were applied so far."""
        return {kind: self._counts[kind] for kind in FAULT_KINDS}

    def _record(self, kind: str, **detail: Any) -> None:
        self._counts[kind] += 1
        if self.on_fault is not None:
            try:
                self.on_fault(kind, detail)
            except Exception:
                LOG.warning("on_fault callback failed for %s", kind, exc_info=True)

    # ----- partitions --------------------------------------------------------------------------

    def blocked(self) -> frozenset[str]:
        return self._blocked

    def is_blocked(self, peer_id: str | ID) -> bool:
        return str(peer_id) in self._blocked

    async def block(self, peer_ids: Iterable[str]) -> None:
        """Cut every link with ``peer_ids``; returns once existing connections are closed.

        All IDs are validated first (:class:`InvalidPeerId`; nothing changes then). The gates
        are active before this awaits anything.
        """
        peers = parse_peer_ids(peer_ids)
        for peer in sorted(peers - self._blocked):
            self._record("block", peer=peer)
        self._blocked = self._blocked | peers
        if self._hooks is not None and peers:
            await self._hooks.disconnect(peers)

    async def unblock(self, peer_ids: Iterable[str]) -> None:
        """Allow ``peer_ids`` again (nobody redials: the caller or the overlay does)."""
        peers = parse_peer_ids(peer_ids)
        self._lift(peers & self._blocked)

    async def heal(self) -> None:
        """Unblock every peer."""
        self._lift(self._blocked)

    def _lift(self, peers: frozenset[str]) -> None:
        self._blocked = self._blocked - peers
        for peer in sorted(peers):
            self._record("unblock", peer=peer)
            if self._hooks is not None:
                self._hooks.forget_failed_dial(peer)  # G13: else 60 s of instant failures

    def _refuse(self, peer_id: ID | str, via: str) -> None:
        if str(peer_id) in self._blocked:
            self._record("refused_dial", peer=str(peer_id), via=via)
            raise PartitionedPeer(f"{peer_id} is partitioned away from this node")

    # ----- message faults ----------------------------------------------------------------------

    def set_message_faults(self, faults: MessageFaults) -> None:
        """Replace the message faults (fresh per-peer RNGs from ``faults.seed``)."""
        if not isinstance(faults, MessageFaults):
            raise InvalidFaultSpec("expected a MessageFaults")
        if faults.reorder and self._nursery is None:
            raise InvalidFaultSpec("reorder needs a running gate (FaultGate.running())")
        self._faults = faults
        self._rngs = {}

    def clear_message_faults(self) -> None:
        """No more message faults; frames already held are still flushed by their timer."""
        had = self._faults is not None
        self._faults = None
        self._rngs = {}
        if had:
            self._record("messages_cleared")

    def message_faults(self) -> MessageFaults | None:
        return self._faults

    @property
    def has_message_faults(self) -> bool:
        return self._faults is not None

    def message_faults_apply_to(self, peer_id: str) -> bool:
        faults = self._faults
        return faults is not None and faults.kinds is None and faults.applies_to(peer_id)

    def drops_request(self, peer_id: str, kind: str) -> bool:
        """Whether to drop a request of message type ``kind`` to ``peer_id`` (faults with
        ``kinds``): the sender sees it unanswered, as if lost on the way."""
        faults = self._faults
        if faults is None or faults.kinds is None or kind not in faults.kinds:
            return False
        if not faults.applies_to(peer_id) or self._rng(faults, peer_id).random() >= faults.drop:
            return False
        self._record("drop", peer=peer_id, message=kind)
        return True

    def _rng(self, faults: MessageFaults, peer_id: str) -> random.Random:
        rng = self._rngs.get(peer_id)
        if rng is None:
            rng = random.Random(f"{faults.seed}/{peer_id}" if faults.seed is not None else None)
            self._rngs[peer_id] = rng
        return rng

    async def apply_outbound(
        self,
        peer_id: str,
        protocol: str,
        send: Send,
        frame: bytes,
        *,
        stream_key: object | None = None,
    ) -> None:
        """Send ``frame`` with ``send`` under the current message faults.

        ``stream_key`` identifies the stream for reorder (default: ``send``). Errors of ``send``
        propagate to the caller, except when sending a frame held for reorder by the timer.
        """
        faults = self._faults
        if faults is None or not faults.applies_to(peer_id):
            await send(frame)
            return
        rng = self._rng(faults, peer_id)
        # Always three draws per frame, in this order, so that a seed fixes the whole schedule.
        drop_draw, duplicate_draw, reorder_draw = rng.random(), rng.random(), rng.random()
        detail = {"peer": peer_id, "protocol": protocol, "size": len(frame)}
        if drop_draw < faults.drop:
            self._record("drop", **detail)
            return
        copies = 1
        if duplicate_draw < faults.duplicate:
            copies = 2
            self._record("duplicate", **detail)
        if faults.delay_ms:
            self._record("delay", delay_ms=faults.delay_ms, **detail)
            await trio.sleep(faults.delay_ms / 1000)
        key = stream_key if stream_key is not None else send
        slot = self._slots.setdefault(key, _StreamSlot())
        slot.users += 1
        try:
            async with slot.lock:
                hold = (
                    faults.reorder
                    and slot.held is None
                    and reorder_draw < faults.reorder_probability
                    and self._nursery is not None
                )
                if hold:
                    assert self._nursery is not None
                    slot.held, slot.held_send = [frame] * copies, send
                    slot.generation += 1
                    slot.users += 1  # the timer's reference
                    self._record("reorder", **detail)
                    self._nursery.start_soon(
                        self._flush_later, key, slot, slot.generation, faults.reorder_timeout_ms
                    )
                    return
                for _ in range(copies):
                    await send(frame)
                held, slot.held, slot.held_send = slot.held, None, None
                for copy in held or ():
                    await send(copy)
        finally:
            self._release(key, slot)

    async def _flush_later(
        self, key: object, slot: _StreamSlot, generation: int, timeout_ms: int
    ) -> None:
        try:
            await trio.sleep(timeout_ms / 1000)
            async with slot.lock:
                if slot.generation != generation or slot.held is None:
                    return  # the next frame already released it
                held, send = slot.held, slot.held_send
                slot.held, slot.held_send = None, None
                assert send is not None
                self._record("reorder_flush", copies=len(held))
                try:
                    for copy in held:
                        await send(copy)
                except Exception as exc:
                    self._record("reorder_lost", error=type(exc).__name__)
        finally:
            self._release(key, slot)

    def _release(self, key: object, slot: _StreamSlot) -> None:
        slot.users -= 1
        if slot.users == 0 and slot.held is None and self._slots.get(key) is slot:
            del self._slots[key]

    # ----- clock -------------------------------------------------------------------------------

    def set_clock_offset(self, seconds: float) -> None:
        """Skew the node's wall clock by ``seconds`` (may be negative; 0 resets)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidFaultSpec("a clock offset is a number of seconds")
        if not math.isfinite(seconds):
            raise InvalidFaultSpec("a clock offset must be finite")
        self.clock.offset_ns = round(seconds * 1_000_000_000)
        self._record("clock_offset", offset_ns=self.clock.offset_ns)

    @property
    def clock_offset_ns(self) -> int:
        return self.clock.offset_ns


class _SwarmHooks:
    """G14: the partition gate, installed on ONE swarm instance (never on the class)."""

    def __init__(self, gate: FaultGate, swarm: Swarm) -> None:
        self.gate = gate
        self.swarm = swarm
        self.originals: dict[str, Callable[..., Any]] = {
            name: getattr(swarm, name) for name in _PATCHED_SWARM_METHODS
        }
        self.inner_handler = swarm.common_stream_handler

    def install(self) -> None:
        for name in _PATCHED_SWARM_METHODS:
            setattr(self.swarm, name, getattr(self, name))
        self.swarm.set_stream_handler(self.stream_handler)

    def uninstall(self) -> None:
        for name in _PATCHED_SWARM_METHODS:
            if self.swarm.__dict__.get(name) == getattr(self, name):
                del self.swarm.__dict__[name]
        if self.swarm.common_stream_handler == self.stream_handler:
            self.swarm.set_stream_handler(self.inner_handler)

    def forget_failed_dial(self, peer: str) -> None:
        cache = getattr(self.swarm, "_negative_peer_cache", None)
        if cache is not None:
            cache.evict(peer)

    async def disconnect(self, peers: frozenset[str]) -> None:
        """Close every connection to ``peers`` (concurrently: each close takes ~0.1 s)."""
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                for peer in peers:
                    peer_id = ID.from_base58(peer)
                    conns = self.swarm.get_connections(peer_id)
                    if not conns:
                        continue
                    for conn in conns:
                        self.gate._record("closed_connection", peer=peer, direction=_dir(conn))
                    nursery.start_soon(self.swarm.close_peer, peer_id)

    # --- wrapped swarm methods (same signatures as Swarm's) ---

    async def add_conn(self, muxed_conn: IMuxedConn, direction: str = "unknown") -> INetConn:
        peer = str(muxed_conn.peer_id)
        if self.gate.is_blocked(peer):
            self.gate._record("refused_connection", peer=peer, direction=direction)
            await _discard(muxed_conn)
            raise PartitionedPeer(f"connection with {peer} refused: partitioned")
        conn = await self.originals["add_conn"](muxed_conn, direction)
        if self.gate.is_blocked(peer):  # block() ran while the connection was being set up
            self.gate._record("refused_connection", peer=peer, direction=direction)
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(CLOSE_TIMEOUT_S),
                contextlib.suppress(Exception),
            ):
                await conn.close()
            raise PartitionedPeer(f"connection with {peer} refused: partitioned")
        return conn  # type: ignore[no-any-return]

    async def dial_peer(self, peer_id: ID) -> list[INetConn]:
        self.gate._refuse(peer_id, "dial_peer")
        return await self.originals["dial_peer"](peer_id)  # type: ignore[no-any-return]

    async def dial_peer_replacement(self, peer_id: ID) -> INetConn | None:
        if self.gate.is_blocked(peer_id):
            self.gate._record("refused_dial", peer=str(peer_id), via="dial_peer_replacement")
            return None  # the swarm's contract for "could not dial a replacement"
        return await self.originals["dial_peer_replacement"](peer_id)  # type: ignore[no-any-return]

    async def dial_addr(
        self, addr: Multiaddr, peer_id: ID, source: tuple[str, int] | None = None
    ) -> INetConn:
        self.gate._refuse(peer_id, "dial_addr")
        return await self.originals["dial_addr"](addr, peer_id, source)  # type: ignore[no-any-return]

    async def dial_addr_as_responder(
        self, addr: Multiaddr, peer_id: ID, source: tuple[str, int] | None = None
    ) -> INetConn:
        self.gate._refuse(peer_id, "dial_addr_as_responder")
        return await self.originals["dial_addr_as_responder"](addr, peer_id, source)  # type: ignore[no-any-return]

    async def new_stream(self, peer_id: ID) -> INetStream:
        self.gate._refuse(peer_id, "new_stream")
        return await self.originals["new_stream"](peer_id)  # type: ignore[no-any-return]

    async def stream_handler(self, stream: INetStream) -> None:
        """In front of the host's handler: reset streams from blocked peers unserved."""
        try:
            peer = str(stream.muxed_conn.peer_id)
        except Exception:
            peer = ""
        if peer and self.gate.is_blocked(peer):
            self.gate._record("reset_stream", peer=peer)
            await reset_quietly(stream)
            return
        await self.inner_handler(stream)


def _dir(conn: INetConn) -> str:
    direction = getattr(conn, "direction", None)
    return str(getattr(direction, "value", direction))


async def _discard(muxed_conn: IMuxedConn) -> None:
    """Close a muxed connection that will never be registered, and release its rcmgr scope."""
    scope = getattr(muxed_conn, "_resource_scope", None)
    if scope is not None and hasattr(scope, "close"):
        with contextlib.suppress(Exception):
            closing = scope.close()
            if inspect.isawaitable(closing):
                await closing
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(CLOSE_TIMEOUT_S),
        contextlib.suppress(Exception),
    ):
        await muxed_conn.close()
