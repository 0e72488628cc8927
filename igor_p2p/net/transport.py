"""The node core's :class:`~igor_p2p.core.ports.Transport` port over py-libp2p streams.

The only module that carries the authority protocols over libp2p
(``protocols/igor-p2p-transport.md``). Each request message family has its own protocol ID,
in a namespace of its own so that it never meets Go Igor's ``/igor/migrate/1.0.0``
(:mod:`igor_p2p.net.go_igor` answers Go there):

- ``/igor-p2p/migrate/2.0.0``: OFFER, COMMIT, ABORT;
- ``/igor-p2p/witness/1.0.0``: PREPARE, ACCEPT, LEARN, STATUS;
- ``/igor-p2p/module/1.0.0``: GET_MODULE.

A frame (:mod:`igor_p2p.net.framing`: 4-byte big-endian length) carries a 4-byte big-endian
request number and the msgpack message. The reply echoes the number. A stream carries one
request at a time; the requester keeps a finished stream warm (at most
``idle_streams_per_protocol`` per peer and protocol, for at most ``idle_stream_max_age_s``) and
sends its next request to that peer on it, which saves the two multistream-select round trips
of a fresh stream (measured: 3.2 ms → 0.8 ms per small request on loopback). A stream that
failed or timed out is reset, never reused, so a late reply is never delivered; a reply whose
number is below the one awaited is a duplicate (message faults) and is skipped. When the peer
ends a reused stream before answering (its idle timeout raced the request, as with an HTTP
keep-alive close), the request goes once more on a fresh stream; a fresh stream is not retried.

Serving, per stream: read one frame within ``read_timeout_s`` (size capped per protocol),
decode it strictly (a malformed message gets REFUSED ``MALFORMED`` with words), check that it
is a request of this protocol (else REFUSED ``UNSUPPORTED``) and that its ``sender`` is the
Noise-authenticated peer (else REFUSED ``MALFORMED``), call the handler, write the reply, and
wait for the next frame. An exception ends that stream only (reset; logged once per peer per
interval without a traceback); :func:`igor_p2p.net.handlers.guarded` stands behind it (G1).

A handler that raises gives the requester :class:`PeerUnreachable` (its stream is reset), as
does a node that is not serving; the node core itself answers its typed errors with REFUSED.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from igor_p2p.core.ports import Handler, PeerUnreachable
from igor_p2p.net.errors import (
    ConnectionClosedCleanly,
    FrameTimeout,
    FrameTooLarge,
    NetError,
    StreamBroken,
)
from igor_p2p.net.framing import OutboundFaults, read_frame, write_frame
from igor_p2p.net.go_igor import GoRefusal, serve_go_refusal
from igor_p2p.net.handlers import (
    HandlerCounters,
    PeerStreamLimiter,
    reset_quietly,
    set_guarded_handler,
)
from igor_p2p.net.host import dial
from igor_p2p.net.keys import public_key_from_peer_id
from igor_p2p.net.peerid import InvalidPeerId, peer_id_from_public_key
from igor_p2p.net.quietlog import PeerLogLimiter
from igor_p2p.net.warm_streams import PeerSlots, Warm, WarmPool
from igor_p2p.wire.codec import MAX_FRAME_BYTES, MalformedMessage, Message, encode
from igor_p2p.wire.messages import (
    HANDOFF_REQUESTS,
    MESSAGES,
    WITNESS_REQUESTS,
    GetModule,
    Refused,
    RefusedCode,
)

LOG = logging.getLogger(__name__)

MIGRATE_PROTOCOL = "/igor-p2p/migrate/2.0.0"
WITNESS_PROTOCOL = "/igor-p2p/witness/1.0.0"
MODULE_PROTOCOL = "/igor-p2p/module/1.0.0"

REQUEST_NUMBER = struct.Struct(">I")
"""Before the message in every frame: the request's number on its stream (the reply echoes it)."""
FRAME_OVERHEAD = 4 + REQUEST_NUMBER.size
"""Bytes a frame adds to a message: its length and the request number."""
MAX_MODULE_REQUEST_BYTES = 4096
CLOSE_TIMEOUT_S = 1.0
DRAIN_CHUNK = 1 << 16


class NotARequest(NetError):
    """The message is not a request of any protocol (a reply type); it cannot be sent."""


@dataclass(frozen=True)
class Route:
    """One protocol ID, the request types it carries, and the largest request frame it takes."""

    protocol: str
    requests: tuple[type[Message], ...]
    max_request_bytes: int


ROUTES: tuple[Route, ...] = (
    Route(MIGRATE_PROTOCOL, HANDOFF_REQUESTS, MAX_FRAME_BYTES),
    Route(WITNESS_PROTOCOL, WITNESS_REQUESTS, MAX_FRAME_BYTES),
    Route(MODULE_PROTOCOL, (GetModule,), MAX_MODULE_REQUEST_BYTES),
)
_ROUTE_OF: dict[type[Message], Route] = {t: route for route in ROUTES for t in route.requests}


def route_of(message: Message) -> Route:
    """The protocol that carries ``message``; :class:`NotARequest` for a reply type."""
    route = _ROUTE_OF.get(type(message))
    if route is None:
        raise NotARequest(f"{message.TYPE} is not a request of any protocol")
    return route


@dataclass(frozen=True)
class TransportLimits:
    """Every size, count and timeout of the transport (nodes should use the same values)."""

    max_reply_bytes: int = MAX_FRAME_BYTES
    """Largest reply frame a requester reads."""
    max_request_bytes: int = MAX_FRAME_BYTES
    """Largest request frame served (lowered further per protocol: GET_MODULE 4 KiB)."""
    read_timeout_s: float = 120.0
    """Server: one whole request frame must arrive within this (also ends an idle stream)."""
    write_timeout_s: float = 120.0
    """Server: one whole reply frame must be written within this."""
    max_inbound_streams_per_peer: int = 32
    """Server: concurrent streams of one peer on these protocols; more are reset."""
    max_requests_in_flight_per_peer: int = 16
    """Requester: concurrent requests to one peer; more wait (their timeout runs)."""
    idle_streams_per_protocol: int = 1
    """Requester: warm streams kept per peer and protocol."""
    idle_stream_max_age_s: float = 10.0
    """Requester: a warm stream idle longer than this is closed, not reused (keep it well
    below the server's ``read_timeout_s``, which closes idle streams from its side)."""
    max_pooled_peers: int = 256
    """Requester: peers with warm streams (least recently used beyond this are closed)."""
    log_interval_s: float = 60.0
    """One warning per peer per this many seconds for failed streams."""

    def __post_init__(self) -> None:
        if self.max_requests_in_flight_per_peer + 3 * self.idle_streams_per_protocol > (
            self.max_inbound_streams_per_peer
        ):
            raise ValueError("requests in flight plus warm streams exceed the inbound limit")


class _HandlerFailed(Exception):
    """The handler raised (a bug in the node core): its stream is reset, the node lives on."""


class _StaleWarmStream(Exception):
    """A reused stream failed before the peer answered: the write failed, or the peer ended the
    stream at a frame boundary (its idle ``read_timeout_s`` raced our request, as an HTTP
    keep-alive close does). The request goes once more on a fresh stream. The server resets an
    idle stream without reading what arrives, and every request is safe to deliver twice (the
    core answers duplicates; the simulation's message faults duplicate requests)."""


class Libp2pTransport:
    """:class:`~igor_p2p.core.ports.Transport` over a running py-libp2p host.

    ``key`` is this node's 32-byte Ed25519 public key (the host's identity). ``gate``: the
    node's :class:`~igor_p2p.net.faults.FaultGate`; its message faults apply to every frame
    written here, and a peer it blocks is unreachable at once (its partition hooks, attached
    to the host by whoever runs the gate, cut the connections themselves).
    """

    def __init__(
        self,
        host: IHost,
        key: bytes,
        *,
        gate: OutboundFaults | None = None,
        limits: TransportLimits | None = None,
        refuse_go_igor: bool = True,
    ) -> None:
        if public_key_from_peer_id(host.get_id()) != key:
            raise ValueError("the node key is not the host's identity")
        self.host = host
        self.me = key
        self.gate = gate
        self.limits = limits if limits is not None else TransportLimits()
        self.stats: Counter[str] = Counter()
        """What happened: opened/reused streams, refusals, failed streams, bytes of the request
        and reply frames written (for tests, metrics, the bench)."""
        self.counters = HandlerCounters()
        self._handler: Handler | None = None
        self._registered = False
        self.go_refusal: GoRefusal | None = None
        self._refuse_go_igor = refuse_go_igor
        self._pool = WarmPool(
            self.limits.idle_streams_per_protocol,
            self.limits.max_pooled_peers,
            self.limits.idle_stream_max_age_s,
        )
        self._slots = PeerSlots(self.limits.max_requests_in_flight_per_peer)
        self._inbound = PeerStreamLimiter(self.limits.max_inbound_streams_per_peer)
        self._quiet = PeerLogLimiter(LOG, interval_s=self.limits.log_interval_s)

    # ---------------------------------------------------------------- requesting

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        """Send ``message`` to ``peer`` and return its reply; :class:`PeerUnreachable` when no
        reply came within ``timeout`` (no route, refused, reset, garbled reply, ...)."""
        if peer == self.me:
            # As SimTransport: straight to our own handler, through the codec both ways.
            if self._handler is None:
                raise PeerUnreachable("not serving")
            await trio.lowlevel.checkpoint()
            asked = MESSAGES.decode(encode(message))
            return MESSAGES.decode(encode(await self._handler(self.me, asked)))
        route = route_of(message)
        body = encode(message)
        self.stats[f"request_bytes:{message.TYPE}"] += FRAME_OVERHEAD + len(body)
        try:
            peer_id = ID.from_base58(peer_id_from_public_key(peer))
        except InvalidPeerId as exc:
            raise PeerUnreachable(f"not a node key: {exc}") from None
        if _drops(self.gate, peer_id, message.TYPE):
            raise PeerUnreachable(f"{message.TYPE} to {peer_id} dropped by a test fault")
        with trio.move_on_after(timeout):
            async with self._slots.hold(peer_id):
                return await self._exchange(peer_id, route, body)
        raise PeerUnreachable(f"no reply from {peer.hex()[:8]} within {timeout} s")

    async def _exchange(self, peer_id: ID, route: Route, body: bytes) -> Message:
        if self.gate is not None and _blocks(self.gate, peer_id):
            raise PeerUnreachable(f"{peer_id} is partitioned away from this node")
        stale: list[Warm] = []
        warm = self._pool.take(peer_id, route.protocol, stale)
        await self._discard(stale)
        if warm is not None:
            self.stats["reused"] += 1
            try:
                return await self._round_trip(warm, body, reused=True)
            except _StaleWarmStream:
                self.stats["stale_warm_stream"] += 1
        warm = await self._open(peer_id, route)
        return await self._round_trip(warm, body, reused=False)

    async def _open(self, peer_id: ID, route: Route) -> Warm:
        try:
            if not self.host.get_network().get_connections(peer_id):
                try:
                    addrs = self.host.get_peerstore().addrs(peer_id)
                except Exception:
                    addrs = []
                if not addrs:
                    raise PeerUnreachable(f"no known address for {peer_id}")
                await dial(self.host, PeerInfo(peer_id, addrs), timeout_s=math.inf)
            stream = await self.host.new_stream(peer_id, [TProtocol(route.protocol)])
        except PeerUnreachable:
            raise
        except Exception as exc:  # DialFailed, StreamFailure, SwarmException, OSError, ...
            raise PeerUnreachable(f"cannot open {route.protocol} to {peer_id}: {exc}") from None
        self.stats["opened"] += 1
        return Warm(stream, peer_id, route.protocol)

    async def _round_trip(self, warm: Warm, body: bytes, *, reused: bool) -> Message:
        number = warm.next_number
        warm.next_number += 1
        keep = False
        try:
            try:
                self.stats["request_bytes"] += FRAME_OVERHEAD + len(body)
                await write_frame(
                    warm.stream,
                    REQUEST_NUMBER.pack(number) + body,
                    timeout_s=math.inf,
                    gate=self.gate,
                    peer=str(warm.peer),
                    protocol=warm.protocol,
                )
            except StreamBroken as exc:
                if reused:
                    raise _StaleWarmStream() from exc
                raise
            try:
                answered, frame = await self._read_reply(warm, number)
            except ConnectionClosedCleanly as exc:
                if reused:
                    raise _StaleWarmStream() from exc
                raise
            try:
                reply = MESSAGES.decode(frame[REQUEST_NUMBER.size :])
            except MalformedMessage as exc:
                raise PeerUnreachable(f"garbled reply from {warm.peer}: {exc}") from None
            keep = answered == number  # a refusal of the frame itself ends the stream
            return reply
        except (PeerUnreachable, _StaleWarmStream):
            raise
        except Exception as exc:  # framing errors, libp2p stream errors, ...
            raise PeerUnreachable(f"{warm.protocol} to {warm.peer}: {exc}") from None
        finally:
            if keep:
                overflow: list[Warm] = []
                self._pool.give(warm, overflow)
                await self._discard(overflow, close=True)
            else:
                await reset_quietly(warm.stream)

    async def _read_reply(self, warm: Warm, number: int) -> tuple[int, bytes]:
        """The reply to request ``number`` (or the server's refusal of the frame in flight,
        numbered 0, when it could not read the frame's number), skipping duplicates."""
        while True:
            frame = await read_frame(
                warm.stream,
                max_size=self.limits.max_reply_bytes + REQUEST_NUMBER.size,
                timeout_s=math.inf,
            )
            if len(frame) < REQUEST_NUMBER.size:
                raise PeerUnreachable(f"garbled reply from {warm.peer}: no request number")
            (answered,) = REQUEST_NUMBER.unpack_from(frame)
            if answered in (number, 0):
                return answered, frame
            if answered < number:
                self.stats["duplicate_reply_skipped"] += 1
                continue
            raise PeerUnreachable(f"garbled reply from {warm.peer}: answers request {answered}")

    async def _discard(self, streams: Iterable[Warm], *, close: bool = False) -> None:
        for warm in streams:
            if close:
                await _close_quietly(warm.stream)
            else:
                await reset_quietly(warm.stream)

    async def aclose(self) -> None:
        """Close the warm streams (the host's own close ends them too)."""
        await self._discard(self._pool.drain(), close=True)

    def warm_streams(self, peer: bytes | None = None) -> int:
        """How many idle warm streams are kept (to ``peer``, or in all)."""
        if peer is None:
            return self._pool.idle_count()
        return self._pool.idle_count(ID.from_base58(peer_id_from_public_key(peer)))

    # ---------------------------------------------------------------- serving

    def serve(self, handler: Handler) -> None:
        """Answer every request on the three protocols with ``handler(sender, message)``, and
        (unless ``refuse_go_igor=False``) Go Igor's ``/igor/migrate/1.0.0`` with a refusal."""
        self._handler = handler
        if self._registered:
            return
        for route in ROUTES:
            set_guarded_handler(
                self.host,
                route.protocol,
                functools.partial(self._serve_stream, route),
                log=LOG,
                limiter=self._inbound,
                counters=self.counters,
            )
        if self._refuse_go_igor:
            self.go_refusal = serve_go_refusal(self.host)
        self._registered = True

    async def _serve_stream(self, route: Route, stream: INetStream) -> None:
        """One inbound stream: request after request until the requester closes it."""
        peer = _remote_peer(stream)
        try:
            await self._serve_requests(route, stream, peer)
        except NetError as exc:  # the requester went away (reset, EOF mid-frame, slow reader)
            self.stats["stream_broken"] += 1
            LOG.debug("%s: stream from %s ended: %s", route.protocol, peer, _describe(exc))
            await reset_quietly(stream)
        except Exception as exc:  # ends this stream only, never the node (G1)
            self.stats["stream_failed"] += 1
            why = str(exc) if isinstance(exc, _HandlerFailed) else _describe(exc)
            self._quiet.warning(str(peer), f"{route.protocol}: stream from {peer} failed: {why}")
            await reset_quietly(stream)

    async def _serve_requests(self, route: Route, stream: INetStream, peer: ID | None) -> None:
        try:
            sender = public_key_from_peer_id(peer) if peer is not None else None
        except InvalidPeerId:
            sender = None  # not an Ed25519 identity: no message can name it as its sender
        cap = min(route.max_request_bytes, self.limits.max_request_bytes) + REQUEST_NUMBER.size
        while True:
            try:
                frame = await read_frame(stream, max_size=cap, timeout_s=self.limits.read_timeout_s)
            except ConnectionClosedCleanly:
                await _close_quietly(stream)  # the requester is done with this stream
                return
            except FrameTimeout:
                self.stats["read_timeout"] += 1  # idle or too slow: nothing to answer
                await reset_quietly(stream)
                return
            except FrameTooLarge as exc:
                self.stats["refused_oversized"] += 1
                await self._refuse_and_end(route, stream, peer, str(exc))
                return
            if len(frame) < REQUEST_NUMBER.size:
                self.stats["refused_malformed"] += 1
                await self._refuse_and_end(route, stream, peer, "frame has no request number")
                return
            (number,) = REQUEST_NUMBER.unpack_from(frame)
            try:
                reply = await self._answer(route, sender, frame[REQUEST_NUMBER.size :])
            except Exception as exc:
                raise _HandlerFailed(_describe(exc)) from exc
            answer = encode(reply)
            self.stats["reply_bytes"] += FRAME_OVERHEAD + len(answer)
            self.stats[f"reply_bytes:{reply.TYPE}"] += FRAME_OVERHEAD + len(answer)
            await write_frame(
                stream,
                REQUEST_NUMBER.pack(number) + answer,
                timeout_s=self.limits.write_timeout_s,
                gate=self.gate,
                peer=str(peer),
                protocol=route.protocol,
            )

    async def _answer(self, route: Route, sender: bytes | None, body: bytes) -> Message:
        try:
            message = MESSAGES.decode(body)
        except MalformedMessage as exc:
            self.stats["refused_malformed"] += 1
            return Refused(self.me, RefusedCode.MALFORMED, f"malformed request: {exc}"[:500])
        if type(message) not in route.requests:
            self.stats["refused_unsupported"] += 1
            return Refused(
                self.me,
                RefusedCode.UNSUPPORTED,
                f"{message.TYPE} is not a request of {route.protocol}",
            )
        if sender is None or getattr(message, "sender", None) != sender:
            self.stats["refused_sender"] += 1
            return Refused(
                self.me,
                RefusedCode.MALFORMED,
                "the message names another sender than the authenticated peer",
            )
        handler = self._handler
        if handler is None:
            raise RuntimeError("no handler is being served")
        self.stats["served"] += 1
        return await handler(sender, message)

    async def _refuse_and_end(
        self, route: Route, stream: INetStream, peer: ID | None, why: str
    ) -> None:
        """Tell the requester why (request number 0), let it read that, then reset.

        A reset right after the write would discard the refusal unread (py-libp2p drops a
        reset stream's buffered data), so the write side is closed first and what the
        requester still sends is read and dropped for at most ``CLOSE_TIMEOUT_S``.
        """
        refusal = Refused(self.me, RefusedCode.MALFORMED, why[:500])
        with trio.move_on_after(CLOSE_TIMEOUT_S), contextlib.suppress(Exception):
            await write_frame(
                stream,
                REQUEST_NUMBER.pack(0) + encode(refusal),
                timeout_s=CLOSE_TIMEOUT_S,
                peer=str(peer),
                protocol=route.protocol,
            )
            await stream.close_write()
            while await stream.read(DRAIN_CHUNK):
                pass
        await reset_quietly(stream)


def _drops(gate: OutboundFaults | None, peer_id: ID, kind: str) -> bool:
    drops_request = getattr(gate, "drops_request", None)
    return drops_request is not None and bool(drops_request(str(peer_id), kind))


def _blocks(gate: OutboundFaults, peer_id: ID) -> bool:
    is_blocked = getattr(gate, "is_blocked", None)
    return bool(is_blocked(peer_id)) if is_blocked is not None else False


def _remote_peer(stream: INetStream) -> ID | None:
    try:
        return stream.muxed_conn.peer_id
    except Exception:
        return None


async def _close_quietly(stream: INetStream) -> None:
    """Close (FIN) ``stream``, shielded and bounded; reset it if that fails."""
    closed = False
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(CLOSE_TIMEOUT_S),
        contextlib.suppress(Exception),
    ):
        await stream.close()
        closed = True
    if not closed:
        await reset_quietly(stream)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
