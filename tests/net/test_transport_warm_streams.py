"""The warm-stream pool and the per-peer in-flight cap stay bounded and hand out only streams
that can still carry a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import trio
import trio.testing
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from igor_p2p.net.keys import peer_id_from_seed
from igor_p2p.net.warm_streams import MAX_REQUESTS_PER_STREAM, PeerSlots, Warm, WarmPool

PEERS = [ID.from_base58(peer_id_from_seed(bytes([i]) * 32)) for i in range(1, 5)]


@dataclass
class FakeMuxedStream:
    closed: bool = False
    recv_closed: bool = False
    send_closed: bool = False
    reset_received: bool = False


@dataclass
class FakeConn:
    is_closed: bool = False


@dataclass
class FakeStream:
    muxed_stream: FakeMuxedStream = field(default_factory=FakeMuxedStream)
    muxed_conn: FakeConn = field(default_factory=FakeConn)


def warm(peer: ID, protocol: str = "/p/1") -> tuple[Warm, FakeStream]:
    stream = FakeStream()
    return Warm(cast(INetStream, stream), peer, protocol), stream


async def test_a_returned_stream_is_handed_out_again_once() -> None:
    pool = WarmPool(per_key=1, max_peers=8, max_age_s=10)
    w, _ = warm(PEERS[0])
    overflow: list[Warm] = []
    pool.give(w, overflow)
    stale: list[Warm] = []
    assert pool.take(PEERS[0], "/p/2", stale) is None  # another protocol
    assert pool.take(PEERS[0], "/p/1", stale) is w
    assert pool.take(PEERS[0], "/p/1", stale) is None
    assert overflow == stale == [] and pool.idle_count() == 0


async def test_streams_beyond_the_per_key_cap_overflow_oldest_first() -> None:
    pool = WarmPool(per_key=2, max_peers=8, max_age_s=10)
    streams = [warm(PEERS[0])[0] for _ in range(3)]
    overflow: list[Warm] = []
    for w in streams:
        pool.give(w, overflow)
    assert overflow == [streams[0]] and pool.idle_count(PEERS[0]) == 2
    stale: list[Warm] = []
    assert pool.take(PEERS[0], "/p/1", stale) is streams[2]
    assert pool.take(PEERS[0], "/p/1", stale) is streams[1]  # the others were kept


async def test_the_least_recently_used_peer_is_evicted_beyond_max_peers() -> None:
    pool = WarmPool(per_key=1, max_peers=2, max_age_s=10)
    overflow: list[Warm] = []
    first, second, third = (warm(p)[0] for p in PEERS[:3])
    pool.give(first, overflow)
    pool.give(second, overflow)
    pool.give(third, overflow)
    assert overflow == [first] and pool.idle_count() == 2


async def test_old_or_closed_streams_are_never_handed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = WarmPool(per_key=4, max_peers=8, max_age_s=10)
    old, _ = warm(PEERS[0])
    overflow: list[Warm] = []
    pool.give(old, overflow)
    await trio.sleep(11)
    reset, reset_stream = warm(PEERS[0])
    dead_conn, dead_conn_stream = warm(PEERS[0])
    good, _ = warm(PEERS[0])
    for w in (good, reset, dead_conn):
        pool.give(w, overflow)
    assert overflow == []
    reset_stream.muxed_stream.reset_received = True
    dead_conn_stream.muxed_conn.is_closed = True
    stale: list[Warm] = []
    assert pool.take(PEERS[0], "/p/1", stale) is good
    assert stale == [dead_conn, reset]
    assert pool.take(PEERS[0], "/p/1", stale) is None
    assert stale == [dead_conn, reset, old] and pool.idle_count() == 0


async def test_a_stream_out_of_request_numbers_is_not_kept() -> None:
    pool = WarmPool(per_key=1, max_peers=8, max_age_s=10)
    w, _ = warm(PEERS[0])
    w.next_number = MAX_REQUESTS_PER_STREAM
    overflow: list[Warm] = []
    pool.give(w, overflow)
    assert overflow == [w] and pool.idle_count() == 0


async def test_requests_beyond_the_in_flight_cap_wait_and_the_table_empties() -> None:
    slots = PeerSlots(2)
    inside = 0
    most = 0

    async def one() -> None:
        nonlocal inside, most
        async with slots.hold(PEERS[0]):
            inside += 1
            most = max(most, inside)
            await trio.sleep(0.01)
            inside -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(7):
            nursery.start_soon(one)
    assert most == 2
    assert cast(Any, slots)._semaphores == {}
