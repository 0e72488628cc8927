"""One contract for every :class:`~igor_p2p.core.ports.Transport`: the libp2p adapter and the
simulator's in-memory one (in the spirit of trio's ``check_two_way_stream``).

The contract (``protocols/igor-p2p-transport.md``):

- a request gets the reply the peer's handler returned, decoded, every message type;
- the handler is told the authenticated sender, never the one a message claims;
- no reply within the timeout (unknown or stopped node, partition, handler that raises, slow
  handler) is :class:`PeerUnreachable`, raised within the timeout; a reply that comes later is
  never delivered, not even to a later request;
- a request to the node itself goes straight to its own handler.

Where the fake is weaker than libp2p (allowed; never stronger) the lane says so: a forged
``sender`` is refused by libp2p before any handler runs, but reaches the handler (with the true
sender) on SimNet; a raising handler resets one libp2p stream but stops the SimNet node.
Every test takes ``clock``: the sim lane runs in virtual time (MockClock, autojump).
"""

from __future__ import annotations

import hashlib
import os
import random

import pytest
import trio
import trio.testing
from transport_support import (
    EXCHANGES,
    HandlerBug,
    Lane,
    Libp2pLane,
    MiB,
    SimLane,
    offer,
    replies_of,
    requests_of,
    status_reply,
)

from igor_p2p.core.ports import PeerUnreachable
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Offer, Refused, RefusedCode, Status, StatusReply

Clock = trio.testing.MockClock | None
TIMEOUT = 5.0
SHORT = 0.3
SLACK = 1.0
"""How late after its timeout a PeerUnreachable may come (the machine is shared and loaded)."""

BIG_CHECKPOINT = 8 * MiB
"""The conformance size: 8 MiB keeps the suite fast on both lanes. The 64 MiB checkpoint cap
round-trips in ``test_transport_libp2p.py::test_a_64_mib_offer_round_trips``."""


@pytest.fixture(params=["libp2p", "sim"])
def lane_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(lane_kind: str) -> trio.testing.MockClock | None:
    """SimNet runs in virtual time (autojump), libp2p in real time (pytest-trio takes the
    test's Clock argument, if any, for the run)."""
    return trio.testing.MockClock(autojump_threshold=0) if lane_kind == "sim" else None


@pytest.fixture
def lane(lane_kind: str, nursery: trio.Nursery) -> Lane:
    if lane_kind == "libp2p":
        return Libp2pLane(nursery)
    return SimLane(nursery)


async def test_every_request_and_reply_type_round_trips(lane: Lane, clock: Clock) -> None:
    a, b = await lane.start(2)
    seen: list[tuple[bytes, Message]] = []
    answer: list[Message] = []

    async def handler(sender: bytes, message: Message) -> Message:
        seen.append((sender, message))
        return answer[0]

    b.serve(handler)
    for request_type, reply_type in EXCHANGES:
        request = requests_of(a.key)[request_type]
        answer[:] = [replies_of(b.key, a.key)[reply_type]]
        reply = await a.transport.request(b.key, request, TIMEOUT)
        assert reply == answer[0], f"{request_type} -> {reply_type}"
        assert seen[-1] == (a.key, request), request_type
    assert len(seen) == len(EXCHANGES)


async def test_a_request_to_itself_goes_to_its_own_handler(lane: Lane, clock: Clock) -> None:
    (a,) = await lane.start(1)

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        return status_reply(a.key, message.known + (100 if sender == a.key else 0))

    a.serve(handler)
    reply = await a.transport.request(a.key, Status(a.key, "did:key:z", 5), TIMEOUT)
    assert isinstance(reply, StatusReply) and reply.chosen == 105


async def test_a_handler_that_raises_gives_the_requester_peer_unreachable(
    lane: Lane, clock: Clock
) -> None:
    a, b = await lane.start(2)

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        if message.known == 13:
            raise HandlerBug("a bug in the core")
        return status_reply(b.key, message.known)

    b.serve(handler)
    start = trio.current_time()
    with pytest.raises(PeerUnreachable):
        await a.transport.request(b.key, Status(a.key, "did:key:z", 13), SHORT)
    assert trio.current_time() - start < SHORT + SLACK
    if lane.raising_handler_kills_node:
        with pytest.raises(PeerUnreachable):
            await a.transport.request(b.key, Status(a.key, "did:key:z", 1), SHORT)
    else:
        reply = await a.transport.request(b.key, Status(a.key, "did:key:z", 1), TIMEOUT)
        assert isinstance(reply, StatusReply) and reply.chosen == 1


async def test_an_unknown_node_is_unreachable_within_the_timeout(lane: Lane, clock: Clock) -> None:
    (a,) = await lane.start(1)
    stranger = hashlib.sha256(b"nobody runs this key").digest()
    start = trio.current_time()
    with pytest.raises(PeerUnreachable):
        await a.transport.request(stranger, Status(a.key, "did:key:z", 1), SHORT)
    assert trio.current_time() - start < SHORT + SLACK


async def test_a_stopped_node_is_unreachable_within_the_timeout(lane: Lane, clock: Clock) -> None:
    a, b = await lane.start(2)

    async def handler(sender: bytes, message: Message) -> Message:
        return status_reply(b.key, 1)

    b.serve(handler)
    assert isinstance(await a.transport.request(b.key, Status(a.key, "x", 1), TIMEOUT), StatusReply)
    await lane.stop(b)
    start = trio.current_time()
    with pytest.raises(PeerUnreachable):
        await a.transport.request(b.key, Status(a.key, "x", 2), SHORT)
    assert trio.current_time() - start < SHORT + SLACK


async def test_a_reply_after_the_timeout_is_never_delivered(lane: Lane, clock: Clock) -> None:
    a, b = await lane.start(2)
    release = trio.Event()
    late_reply_sent = trio.Event()

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        if message.known == 1:
            await release.wait()
            late_reply_sent.set()
        return status_reply(b.key, message.known)

    b.serve(handler)
    start = trio.current_time()
    with pytest.raises(PeerUnreachable):
        await a.transport.request(b.key, Status(a.key, "x", 1), SHORT)
    assert SHORT <= trio.current_time() - start + 0.01 < SHORT + SLACK
    release.set()
    with trio.fail_after(TIMEOUT):
        await late_reply_sent.wait()
    for known in (2, 3):
        reply = await a.transport.request(b.key, Status(a.key, "x", known), TIMEOUT)
        assert isinstance(reply, StatusReply) and reply.chosen == known


async def test_a_forged_sender_never_reaches_the_handler_as_that_node(
    lane: Lane, clock: Clock
) -> None:
    a, b, c = await lane.start(3)
    senders: list[bytes] = []

    async def handler(sender: bytes, message: Message) -> Message:
        senders.append(sender)
        return status_reply(b.key, 1)

    b.serve(handler)
    reply = await a.transport.request(b.key, Status(c.key, "x", 1), TIMEOUT)
    assert c.key not in senders
    if lane.refuses_forged_sender:
        assert isinstance(reply, Refused) and reply.code is RefusedCode.MALFORMED
        assert reply.sender == b.key and "sender" in reply.reason
        assert senders == []
    else:
        assert senders == [a.key]


async def test_concurrent_requests_from_several_peers_each_get_their_own_reply(
    lane: Lane, clock: Clock
) -> None:
    server, *clients = await lane.start(4)
    rng = random.Random(7)
    seen: list[tuple[bytes, int]] = []

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        seen.append((sender, message.known))
        await trio.sleep(rng.random() * 0.005)
        return status_reply(server.key, message.known)

    server.serve(handler)
    got: dict[int, int] = {}

    async def ask(client_index: int, i: int) -> None:
        client = clients[client_index]
        known = client_index * 1000 + i
        reply = await client.transport.request(server.key, Status(client.key, "x", known), TIMEOUT)
        assert isinstance(reply, StatusReply)
        got[known] = reply.chosen

    async with trio.open_nursery() as nursery:
        for client_index in range(len(clients)):
            for i in range(12):
                nursery.start_soon(ask, client_index, i)
    assert got == {k: k for k in got} and len(got) == 36
    assert sorted(seen) == sorted((clients[k // 1000].key, k) for k in got)


async def test_a_big_offer_round_trips_intact(lane: Lane, clock: Clock) -> None:
    a, b = await lane.start(2)
    checkpoint = os.urandom(BIG_CHECKPOINT)
    digests: list[bytes] = []

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Offer)
        digests.append(hashlib.sha256(message.checkpoint).digest())
        return replies_of(b.key, a.key)["ACK"]

    b.serve(handler)
    reply = await a.transport.request(b.key, offer(a.key, checkpoint), 30.0)
    assert reply.TYPE == "ACK"
    assert digests == [hashlib.sha256(checkpoint).digest()]


async def test_a_partition_makes_the_peer_unreachable_and_healing_restores_it(
    lane: Lane, clock: Clock
) -> None:
    a, b = await lane.start(2)

    async def handler(sender: bytes, message: Message) -> Message:
        assert isinstance(message, Status)
        return status_reply(b.key, message.known)

    b.serve(handler)
    assert isinstance(await a.transport.request(b.key, Status(a.key, "x", 1), TIMEOUT), StatusReply)
    await lane.cut(a, b)
    for sender, receiver in ((a, b), (b, a)):
        start = trio.current_time()
        with pytest.raises(PeerUnreachable):
            await sender.transport.request(receiver.key, Status(sender.key, "x", 2), SHORT)
        assert trio.current_time() - start < SHORT + SLACK
    await lane.heal(a, b)
    reply = await a.transport.request(b.key, Status(a.key, "x", 3), TIMEOUT)
    assert isinstance(reply, StatusReply) and reply.chosen == 3
