"""What only the libp2p transport does: warm streams, strict serving of raw frames, quiet logs,
protocol routing, and the 64 MiB checkpoint cap."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamReset
from libp2p.peer.peerinfo import PeerInfo
from transport_support import LaneNode, Libp2pLane, MiB, offer, replies_of, status_reply

from igor_p2p.core.ports import PeerUnreachable
from igor_p2p.net.faults import MessageFaults
from igor_p2p.net.framing import read_frame, write_frame
from igor_p2p.net.host import HostConfig, build_host
from igor_p2p.net.keys import public_key_from_peer_id
from igor_p2p.net.transport import (
    MIGRATE_PROTOCOL,
    MODULE_PROTOCOL,
    REQUEST_NUMBER,
    ROUTES,
    WITNESS_PROTOCOL,
    Libp2pTransport,
    NotARequest,
    TransportLimits,
    route_of,
)
from igor_p2p.wire.codec import Message, encode
from igor_p2p.wire.messages import (
    MAX_CHECKPOINT_BYTES,
    MESSAGES,
    Offer,
    Refused,
    RefusedCode,
    Status,
    StatusReply,
)

TIMEOUT = 5.0


def transport(node: LaneNode) -> Libp2pTransport:
    assert isinstance(node.transport, Libp2pTransport)
    return node.transport


async def serve_status(node: LaneNode) -> list[tuple[bytes, int]]:
    seen: list[tuple[bytes, int]] = []

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        seen.append((sender, message.known))
        return status_reply(node.key, message.known)

    node.serve(handler)
    return seen


async def ask(a: LaneNode, b: LaneNode, known: int, timeout: float = TIMEOUT) -> int:
    reply = await a.transport.request(b.key, Status(a.key, "x", known), timeout)
    assert isinstance(reply, StatusReply)
    return reply.chosen


async def raw_exchange(a: LaneNode, b: LaneNode, protocol: str, payload: bytes) -> Message:
    """Write one frame on a fresh stream from a to b and decode the reply's message."""
    assert a.host is not None and b.host is not None
    await a.host.connect(_info(b))
    stream = await a.host.new_stream(b.host.get_id(), [TProtocol(protocol)])
    await write_frame(stream, payload, timeout_s=TIMEOUT)
    frame = await read_frame(stream, max_size=1 << 20, timeout_s=TIMEOUT)
    await stream.reset()
    return MESSAGES.decode(frame[REQUEST_NUMBER.size :])


def _info(node: LaneNode) -> PeerInfo:
    assert node.host is not None
    return PeerInfo(node.host.get_id(), node.host.get_addrs())


# ------------------------------------------------------------------------ routing


def test_each_request_family_has_its_own_protocol_in_the_igor_p2p_namespace() -> None:
    assert [r.protocol for r in ROUTES] == [MIGRATE_PROTOCOL, WITNESS_PROTOCOL, MODULE_PROTOCOL]
    assert all(r.protocol.startswith("/igor-p2p/") for r in ROUTES)
    assert {t.TYPE for t in route_of_types(MIGRATE_PROTOCOL)} == {"OFFER", "COMMIT", "ABORT"}
    assert {t.TYPE for t in route_of_types(WITNESS_PROTOCOL)} == {
        "PREPARE",
        "ACCEPT",
        "LEARN",
        "STATUS",
    }
    assert {t.TYPE for t in route_of_types(MODULE_PROTOCOL)} == {"GET_MODULE"}


def route_of_types(protocol: str) -> tuple[type[Message], ...]:
    (route,) = [r for r in ROUTES if r.protocol == protocol]
    return route.requests


def test_a_reply_type_cannot_be_sent_as_a_request() -> None:
    with pytest.raises(NotARequest):
        route_of(replies_of(b"\x01" * 32, b"\x02" * 32)["ACK"])
    assert route_of(Status(b"\x01" * 32, "x", 0)).protocol == WITNESS_PROTOCOL


async def test_a_request_uses_the_protocol_of_its_family(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    await serve_status(b)
    await ask(a, b, 1)
    assert a.host is not None and b.host is not None
    (conn,) = a.host.get_network().get_connections(b.host.get_id())
    protocols = {str(s.get_protocol()) for s in conn.get_streams()}
    assert WITNESS_PROTOCOL in protocols and MIGRATE_PROTOCOL not in protocols


# ------------------------------------------------------------------------ warm streams


async def test_the_next_request_to_a_peer_reuses_the_warm_stream(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    await serve_status(b)
    assert [await ask(a, b, k) for k in (1, 2, 3)] == [1, 2, 3]
    assert transport(a).stats["opened"] == 1 and transport(a).stats["reused"] == 2
    assert transport(a).warm_streams(b.key) == 1


async def test_a_timed_out_stream_is_reset_and_never_reused(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    release = trio.Event()

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        if message.known == 1:
            await release.wait()
        return status_reply(b.key, message.known)

    b.serve(handler)
    assert await ask(a, b, 0) == 0
    with pytest.raises(PeerUnreachable):
        await ask(a, b, 1, timeout=0.3)
    assert transport(a).warm_streams(b.key) == 0
    release.set()
    assert await ask(a, b, 2) == 2
    assert transport(a).stats["opened"] == 2


async def test_an_old_idle_stream_is_closed_not_reused(nursery: trio.Nursery) -> None:
    lane = Libp2pLane(nursery, TransportLimits(idle_stream_max_age_s=0.0))
    a, b = await lane.start(2)
    await serve_status(b)
    assert [await ask(a, b, k) for k in (1, 2)] == [1, 2]
    assert transport(a).stats["opened"] == 2 and transport(a).stats["reused"] == 0


async def test_a_warm_stream_the_server_closed_is_replaced_without_failing_the_request(
    nursery: trio.Nursery,
) -> None:
    lane = Libp2pLane(nursery, TransportLimits(read_timeout_s=0.2, idle_stream_max_age_s=30))
    a, b = await lane.start(2)
    await serve_status(b)
    assert await ask(a, b, 1) == 1
    with trio.fail_after(TIMEOUT):
        while transport(b).stats["read_timeout"] == 0:  # the server ends the idle stream
            await trio.sleep(0.02)
    assert await ask(a, b, 2) == 2
    assert transport(a).stats["opened"] == 2


async def test_a_reused_stream_the_server_ends_before_answering_is_retried_on_a_fresh_one(
    nursery: trio.Nursery,
) -> None:
    """The race CI hit: the server's idle timeout ends a warm stream just as the next request
    goes out on it, so the write succeeds and the read meets EOF. Forced here by a server that
    answers a stream's first request and ends the stream at the second, unanswered."""
    a, b = await Libp2pLane(nursery).start(2)
    assert b.host is not None
    streams_served = 0

    async def answer_one_then_end(stream: INetStream) -> None:
        nonlocal streams_served
        streams_served += 1
        frame = await read_frame(stream, max_size=MiB, timeout_s=TIMEOUT)
        (number,) = REQUEST_NUMBER.unpack_from(frame)
        asked = MESSAGES.decode(frame[REQUEST_NUMBER.size :])
        assert isinstance(asked, Status)
        reply = status_reply(b.key, asked.known)
        await write_frame(stream, REQUEST_NUMBER.pack(number) + encode(reply), timeout_s=TIMEOUT)
        await read_frame(stream, max_size=MiB, timeout_s=TIMEOUT)  # read, never answered
        await stream.close()

    b.host.set_stream_handler(TProtocol(WITNESS_PROTOCOL), answer_one_then_end)
    assert await ask(a, b, 1) == 1
    assert await ask(a, b, 2) == 2  # its first stream ended unanswered: sent again, answered
    assert streams_served == 2 and transport(a).stats["stale_warm_stream"] == 1
    ended_unanswered = 0

    async def end_unanswered(stream: INetStream) -> None:
        nonlocal ended_unanswered
        ended_unanswered += 1
        await read_frame(stream, max_size=MiB, timeout_s=TIMEOUT)
        await stream.close()

    b.host.set_stream_handler(TProtocol(WITNESS_PROTOCOL), end_unanswered)
    with pytest.raises(PeerUnreachable):  # a fresh stream that ends unanswered is not retried
        await a.transport.request(b.key, Status(a.key, "x", 3), TIMEOUT)
    assert ended_unanswered == 1 and transport(a).stats["stale_warm_stream"] == 2


async def test_a_warm_stream_whose_connection_died_is_replaced(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    await serve_status(b)
    assert await ask(a, b, 1) == 1
    assert a.host is not None and b.host is not None
    await a.host.get_network().close_peer(b.host.get_id())
    assert await ask(a, b, 2) == 2
    assert transport(a).stats["opened"] == 2


async def test_warm_streams_stay_bounded_under_many_concurrent_requests(
    nursery: trio.Nursery,
) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    await serve_status(b)
    limits = transport(a).limits
    async with trio.open_nursery() as inner:
        for k in range(3 * limits.max_requests_in_flight_per_peer):
            inner.start_soon(ask, a, b, k)
    assert transport(a).warm_streams(b.key) == limits.idle_streams_per_protocol
    assert transport(b).counters.over_limit == {}  # the requester never exceeded the server's cap


async def test_duplicated_frames_never_answer_the_wrong_request(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    seen = await serve_status(b)
    assert a.gate is not None and b.gate is not None
    a.gate.set_message_faults(MessageFaults(duplicate=1.0, seed=1))
    b.gate.set_message_faults(MessageFaults(duplicate=1.0, seed=2))
    assert [await ask(a, b, k) for k in range(1, 6)] == [1, 2, 3, 4, 5]
    assert [k for _, k in seen].count(1) == 2  # the handler ran twice per request, as in SimNet
    assert transport(a).stats["duplicate_reply_skipped"] > 0


async def test_dropped_requests_give_peer_unreachable_and_the_peer_stays_usable(
    nursery: trio.Nursery,
) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    await serve_status(b)
    assert a.gate is not None
    a.gate.set_message_faults(MessageFaults(drop=1.0, seed=1))
    with pytest.raises(PeerUnreachable):
        await ask(a, b, 1, timeout=0.3)
    a.gate.clear_message_faults()
    assert await ask(a, b, 2) == 2


async def test_a_peer_without_a_known_address_is_unreachable_at_once(
    nursery: trio.Nursery,
) -> None:
    (a,) = await Libp2pLane(nursery).start(1)
    lone = Libp2pLane(nursery)
    (b,) = await lone.start(1)  # a does not know b's address
    start = trio.current_time()
    with pytest.raises(PeerUnreachable, match="no known address"):
        await ask(a, b, 1)
    assert trio.current_time() - start < 1.0


# ------------------------------------------------------------------------ strict serving


async def test_a_malformed_request_gets_refused_malformed_with_words(
    nursery: trio.Nursery,
) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    seen = await serve_status(b)
    reply = await raw_exchange(a, b, WITNESS_PROTOCOL, REQUEST_NUMBER.pack(1) + b"\xc1junk")
    assert isinstance(reply, Refused) and reply.code is RefusedCode.MALFORMED
    assert "malformed request" in reply.reason and reply.sender == b.key
    good = Status(a.key, "x", 4)
    bad_field = encode(good).replace(b"known\x04", b"known\xa1x")
    reply = await raw_exchange(a, b, WITNESS_PROTOCOL, REQUEST_NUMBER.pack(1) + bad_field)
    assert isinstance(reply, Refused) and "known" in reply.reason
    assert seen == []
    assert await ask(a, b, 5) == 5  # the node still serves


async def test_a_request_of_another_family_is_refused_unsupported(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    seen = await serve_status(b)
    payload = REQUEST_NUMBER.pack(1) + encode(Status(a.key, "x", 1))
    reply = await raw_exchange(a, b, MIGRATE_PROTOCOL, payload)
    assert isinstance(reply, Refused) and reply.code is RefusedCode.UNSUPPORTED
    assert MIGRATE_PROTOCOL in reply.reason and seen == []


async def test_an_oversized_frame_is_refused_before_it_is_read(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    await serve_status(b)
    assert a.host is not None and b.host is not None
    await a.host.connect(_info(b))
    stream = await a.host.new_stream(b.host.get_id(), [TProtocol(MODULE_PROTOCOL)])
    await stream.write((1 << 20).to_bytes(4, "big") + b"x" * 100)  # GET_MODULE is capped at 4 KiB
    frame = await read_frame(stream, max_size=1 << 20, timeout_s=TIMEOUT)
    await stream.reset()
    reply = MESSAGES.decode(frame[REQUEST_NUMBER.size :])
    assert isinstance(reply, Refused) and "exceeds the limit" in reply.reason
    assert transport(b).stats["refused_oversized"] == 1


async def test_py_libp2p_drops_unread_data_of_a_stream_reset_after_the_write(
    nursery: trio.Nursery,
) -> None:
    """G30, the bug itself: why a refusal is followed by close_write and a drain, not reset."""
    a, b = await Libp2pLane(nursery).start(2)
    assert a.host is not None and b.host is not None

    async def write_then_reset(stream: INetStream) -> None:
        await stream.write(b"y" * 200)
        await stream.reset()

    b.host.set_stream_handler(TProtocol("/test/reset-after-write/1"), write_then_reset)
    await a.host.connect(_info(b))
    stream = await a.host.new_stream(b.host.get_id(), [TProtocol("/test/reset-after-write/1")])
    with trio.fail_after(TIMEOUT):
        while not getattr(stream.muxed_stream, "reset_received", False):  # type: ignore[attr-defined]
            await trio.sleep(0.01)
    with pytest.raises(StreamReset):
        await stream.read(1000)  # the 200 bytes arrived before the reset, and are gone


async def test_a_requester_gets_the_refusal_of_a_frame_over_the_servers_cap(
    nursery: trio.Nursery,
) -> None:
    a, b = await Libp2pLane(nursery, TransportLimits(max_request_bytes=4096)).start(2)

    async def handler(sender: bytes, message: Message) -> Message:
        return replies_of(b.key, a.key)["ACK"]

    b.serve(handler)
    reply = await a.transport.request(b.key, offer(a.key, b"\x01" * 8192), TIMEOUT)
    assert isinstance(reply, Refused) and reply.code is RefusedCode.MALFORMED
    assert "exceeds the limit" in reply.reason
    assert transport(a).warm_streams(b.key) == 0  # that stream is over
    small = await a.transport.request(b.key, offer(a.key, b"\x01" * 100), TIMEOUT)
    assert small.TYPE == "ACK"


async def test_a_failing_stream_is_logged_once_per_peer_without_a_traceback(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await Libp2pLane(nursery).start(2)

    async def handler(sender: bytes, message: Message) -> Message:
        raise RuntimeError("core bug")

    b.serve(handler)
    with caplog.at_level(logging.WARNING, logger="igor_p2p.net.transport"):
        for k in range(3):
            with pytest.raises(PeerUnreachable):
                await ask(a, b, k)
    records = [r for r in caplog.records if r.name == "igor_p2p.net.transport"]
    assert len(records) == 1 and records[0].exc_info is None
    assert "core bug" in records[0].getMessage()
    assert transport(b).stats["stream_failed"] == 3


# ------------------------------------------------------------------------ big payloads


@pytest.mark.e2e  # about 1 s and a few hundred MB of copies: in `make test`, not `test-fast`
async def test_a_64_mib_offer_round_trips(nursery: trio.Nursery) -> None:
    a, b = await Libp2pLane(nursery).start(2)
    checkpoint = os.urandom(MAX_CHECKPOINT_BYTES)
    digest = hashlib.sha256(checkpoint).digest()

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Offer) and hashlib.sha256(message.checkpoint).digest() == digest
        return replies_of(b.key, a.key)["ACK"]

    b.serve(handler)
    start = trio.current_time()
    reply = await a.transport.request(b.key, offer(a.key, checkpoint), 60.0)
    elapsed = trio.current_time() - start
    assert reply.TYPE == "ACK"
    assert elapsed < 10.0, f"{MAX_CHECKPOINT_BYTES / MiB:.0f} MiB took {elapsed:.1f} s"


def test_the_node_key_must_be_the_host_identity() -> None:
    host = build_host(HostConfig(key_seed=b"\x05" * 32))
    with pytest.raises(ValueError):
        Libp2pTransport(host, b"\x06" * 32)
    Libp2pTransport(host, public_key_from_peer_id(host.get_id()))
