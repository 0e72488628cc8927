"""G14: the fault gate cuts links between in-process hosts (every protocol, both directions when
both sides are told) and applies seeded drop/duplicate/delay/reorder to /igor frames."""

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import HostSpawner, _serve, fresh_seed
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from igor_p2p.net.dht import DhtService, dht_service, get_location, put_location, sign_location
from igor_p2p.net.errors import (
    ConnectionClosedCleanly,
    InvalidFaultSpec,
    InvalidPeerId,
    StreamBroken,
    TruncatedFrame,
)
from igor_p2p.net.faults import FAULT_KINDS, FaultGate, MessageFaults, PartitionedPeer
from igor_p2p.net.framing import TrioStreamAdapter, read_message, write_message
from igor_p2p.net.gossip import (
    GossipConfig,
    GossipService,
    gossip_service,
    publish_message,
    subscribe_messages,
)
from igor_p2p.net.host import HostConfig, build_host, dial, full_addrs
from igor_p2p.net.keys import peer_id_from_seed
from igor_p2p.runtime.clock import NodeClock

ECHO = "/igor/test-echo/1"
DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
TOPIC = "igor/test/partition"
PEER_X = peer_id_from_seed(b"\x71" * 32)


def pid(host: IHost) -> str:
    return host.get_id().to_base58()


def connected(a: IHost, b: IHost) -> bool:
    return bool(a.get_network().get_connections(b.get_id()))


async def gated(nursery: trio.Nursery, host: IHost, **kwargs: Any) -> FaultGate:
    gate = FaultGate(**kwargs)

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        async with gate.running(host):
            task_status.started()
            await trio.sleep_forever()

    await nursery.start(run)
    return gate


def echo_handler(served: list[str]) -> Callable[[INetStream], Any]:
    async def handler(stream: INetStream) -> None:
        served.append(str(stream.muxed_conn.peer_id))
        message = await read_message(stream, max_size=1024, timeout_s=2)
        await write_message(stream, {"type": "ack", "n": message["n"]}, timeout_s=2)
        await stream.close()

    return handler


async def echo(a: IHost, b: IHost, n: int = 1) -> int:
    stream = await a.new_stream(b.get_id(), [TProtocol(ECHO)])
    await write_message(stream, {"type": "ping", "n": n}, timeout_s=2)
    reply = await read_message(stream, max_size=1024, timeout_s=2)
    await stream.close()
    return int(reply["n"])


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Poll a state that no event announces (e.g. the swarm's connection table)."""
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


# ----- partitions ------------------------------------------------------------------------------


async def test_partition_closes_the_connection_and_refuses_dials_and_streams_both_ways(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b = await spawn_hosts(2)
    gate_a, gate_b = await gated(nursery, a), await gated(nursery, b)
    served: list[str] = []
    b.set_stream_handler(TProtocol(ECHO), echo_handler(served))
    await dial(a, full_addrs(b)[0], timeout_s=3)
    assert await echo(a, b) == 1

    with trio.fail_after(2):
        await gate_a.block([pid(b)])
        await gate_b.block([pid(a)])
    assert not connected(a, b)
    await wait_until(lambda: not connected(b, a))
    assert gate_a.stats()["closed_connection"] == 1

    start = trio.current_time()
    with pytest.raises(PartitionedPeer):
        await dial(a, full_addrs(b)[0], timeout_s=3)
    with pytest.raises(PartitionedPeer):
        await dial(b, full_addrs(a)[0], timeout_s=3)
    with pytest.raises(PartitionedPeer):
        await a.new_stream(b.get_id(), [TProtocol(ECHO)])
    with pytest.raises(PartitionedPeer):  # the path py-libp2p's own dialers take
        await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
    assert trio.current_time() - start < 0.5  # refused at once, no TCP, no timeout
    assert not connected(a, b) and not connected(b, a)
    assert served == [pid(a)]
    assert gate_a.stats()["refused_dial"] == 3 and gate_b.stats()["refused_dial"] == 1


async def test_auto_connector_redial_of_a_blocked_peer_is_refused(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b = await spawn_hosts(2)
    reported: list[tuple[str, dict[str, Any]]] = []
    gate_a = await gated(nursery, a, on_fault=lambda k, d: reported.append((k, d)))
    await dial(a, full_addrs(b)[0], timeout_s=3)
    await gate_a.block([pid(b)])
    auto = a.get_network().auto_connector  # type: ignore[attr-defined]
    await wait_until(lambda: not auto._is_connecting)
    # Skip its 60 s post-disconnect back-off: this is the redial a long partition would see.
    for backoff in (auto._recent_disconnects, auto._last_connect_attempt, auto._failure_counts):
        backoff.clear()
    # Our hosts turn the AutoConnector off on the instance (G17); its class method is what any
    # py-libp2p dialer of the peerstore does, and the gate must refuse it all the same.
    await type(auto).maybe_connect(auto)
    assert ("refused_dial", {"peer": pid(b), "via": "dial_peer"}) in reported
    assert not connected(a, b)


async def test_one_way_block_refuses_the_inbound_connection_before_any_stream_is_served(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b = await spawn_hosts(2)
    gate_b = await gated(nursery, b)  # only B is told
    served: list[str] = []
    b.set_stream_handler(TProtocol(ECHO), echo_handler(served))
    await gate_b.block([pid(a)])

    with pytest.raises(Exception):  # noqa: B017 - the dial or the stream fails, either is fine
        with trio.fail_after(3):
            await dial(a, full_addrs(b)[0], timeout_s=3)
            await echo(a, b)
    await wait_until(lambda: not connected(a, b))
    assert served == []
    assert gate_b.stats()["refused_connection"] >= 1
    assert not connected(b, a)


async def test_inbound_stream_from_a_blocked_peer_is_reset_before_its_handler_runs(
    spawn_hosts: HostSpawner, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await spawn_hosts(2)
    gate_b = await gated(nursery, b)
    served: list[str] = []
    b.set_stream_handler(TProtocol(ECHO), echo_handler(served))
    await dial(a, full_addrs(b)[0], timeout_s=3)
    assert await echo(a, b) == 1

    async def close_later(peer_id: ID) -> None:  # the window before the close has landed
        return None

    monkeypatch.setattr(b.get_network(), "close_peer", close_later)
    await gate_b.block([pid(a)])
    assert connected(a, b)
    with pytest.raises(Exception):  # noqa: B017 - reset mid-negotiation or on read
        with trio.fail_after(3):
            await echo(a, b, 2)
    assert served == [pid(a)]
    assert gate_b.stats()["reset_stream"] >= 1


async def test_heal_restores_dialing_and_streams(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b = await spawn_hosts(2)
    gate_a, gate_b = await gated(nursery, a), await gated(nursery, b)
    b.set_stream_handler(TProtocol(ECHO), echo_handler([]))
    a.set_stream_handler(TProtocol(ECHO), echo_handler([]))
    await gate_a.block([pid(b)])
    await gate_b.block([pid(a)])
    with pytest.raises(PartitionedPeer):
        await dial(a, full_addrs(b)[0], timeout_s=3)

    await gate_a.heal()
    await gate_b.unblock([pid(a)])
    assert gate_a.blocked() == gate_b.blocked() == frozenset()
    with trio.fail_after(3):
        await dial(a, full_addrs(b)[0], timeout_s=3)
        assert await echo(a, b, 7) == 7
        assert await echo(b, a, 8) == 8


async def _serve_dht(
    host: IHost, bootstrap: list[str], *, task_status: trio.TaskStatus[DhtService]
) -> None:
    async with dht_service(host, bootstrap) as service:
        task_status.started(service)
        await trio.sleep_forever()


async def test_dht_put_is_not_seen_across_a_partition_and_is_after_heal_and_a_fresh_put(
    nursery: trio.Nursery,
) -> None:
    seed_a, seed_b = fresh_seed(), fresh_seed()
    a = await nursery.start(_serve, build_host(HostConfig(key_seed=seed_a)))
    b = await nursery.start(_serve, build_host(HostConfig(key_seed=seed_b)))
    gate_a, gate_b = await gated(nursery, a), await gated(nursery, b)
    dht_a = await nursery.start(_serve_dht, a, [])
    dht_b = await nursery.start(_serve_dht, b, full_addrs(a))
    await wait_until(lambda: dht_a.dht.get_routing_table_size() == 1)

    await gate_a.block([pid(b)])
    await gate_b.block([pid(a)])
    with trio.fail_after(5):
        await put_location(dht_a, sign_location(seed_a, agent=DID, epoch=1, wall_ns=1))
        assert await get_location(dht_b, DID) is None
    assert dht_b.dht.value_store.get(f"/igor-loc/{DID}".encode()) is None
    assert not connected(a, b) and not connected(b, a)

    await gate_a.heal()
    await gate_b.heal()
    with trio.fail_after(5):
        await dial(b, full_addrs(a)[0], timeout_s=3)
        fresh = sign_location(seed_a, agent=DID, epoch=2, wall_ns=2)
        await put_location(dht_a, fresh)
        assert await get_location(dht_b, DID) == fresh


async def _serve_gossip(host: IHost, *, task_status: trio.TaskStatus[GossipService]) -> None:
    async with gossip_service(host, GossipConfig()) as service:
        task_status.started(service)
        await trio.sleep_forever()


async def _mesh(x: GossipService, y: GossipService) -> None:
    with trio.fail_after(5):
        await x.router.wait_for_mesh(y.pubsub.host.get_id(), TOPIC)
        await y.router.wait_for_mesh(x.pubsub.host.get_id(), TOPIC)


async def test_gossip_does_not_cross_a_partition_and_does_after_heal(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b = await spawn_hosts(2)
    gate_a, gate_b = await gated(nursery, a), await gated(nursery, b)
    gossip_a, gossip_b = [await nursery.start(_serve_gossip, h) for h in (a, b)]
    await dial(a, full_addrs(b)[0], timeout_s=3)
    sub_a, sub_b = [await subscribe_messages(g, TOPIC) for g in (gossip_a, gossip_b)]
    await _mesh(gossip_a, gossip_b)

    await gate_a.block([pid(b)])
    await gate_b.block([pid(a)])
    await publish_message(gossip_a, TOPIC, {"type": "cut"})
    assert (await sub_a.receive()).message["type"] == "cut"  # published locally
    with trio.move_on_after(1.5) as waited:  # > one heartbeat: no gossip, no redial
        await sub_b.receive()
    assert waited.cancelled_caught
    assert not connected(a, b) and not connected(b, a)

    await gate_a.heal()
    await gate_b.heal()
    await dial(b, full_addrs(a)[0], timeout_s=3)
    await _mesh(gossip_a, gossip_b)
    await publish_message(gossip_a, TOPIC, {"type": "healed"})
    with trio.fail_after(5):
        while (await sub_b.receive()).message["type"] != "healed":
            pass  # "cut" may legitimately arrive after the heal (IHAVE/IWANT)


async def test_partition_cuts_the_link_not_the_information_flow_through_a_third_node(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b, c = await spawn_hosts(3)
    gate_a, gate_b = await gated(nursery, a), await gated(nursery, b)
    gossip_a, gossip_b, gossip_c = [await nursery.start(_serve_gossip, h) for h in (a, b, c)]
    for x, y in ((a, b), (a, c), (b, c)):
        await dial(x, full_addrs(y)[0], timeout_s=3)
    sub_b = await subscribe_messages(gossip_b, TOPIC)
    for g in (gossip_a, gossip_c):
        await subscribe_messages(g, TOPIC)
    await _mesh(gossip_a, gossip_c)
    await _mesh(gossip_c, gossip_b)

    await gate_a.block([pid(b)])
    await gate_b.block([pid(a)])
    await publish_message(gossip_a, TOPIC, {"type": "relayed"})
    with trio.fail_after(5):
        got = await sub_b.receive()
    assert got.message["type"] == "relayed" and got.sender == pid(a)  # via C: legitimate
    assert not connected(a, b) and not connected(b, a)  # ... but never over a direct A-B link
    with pytest.raises(PartitionedPeer):
        await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
    assert connected(a, c) and connected(b, c)


def test_swarm_methods_are_patched_on_the_instance_only_and_restored_on_detach() -> None:
    host = build_host(HostConfig(key_seed=fresh_seed()))
    other = build_host(HostConfig(key_seed=fresh_seed()))
    swarm = host.get_network()
    handler = swarm.common_stream_handler  # type: ignore[attr-defined]
    gate = FaultGate()
    gate.attach(host)
    assert "dial_peer" in vars(swarm) and "dial_peer" not in vars(other.get_network())
    assert swarm.common_stream_handler != handler  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        gate.attach(host)
    gate.detach()
    assert "dial_peer" not in vars(swarm) and "add_conn" not in vars(swarm)
    assert swarm.common_stream_handler == handler  # type: ignore[attr-defined]


# ----- the block-list model ----------------------------------------------------------------------

PEERS = [peer_id_from_seed(bytes([i]) * 32) for i in range(1, 6)]
peer_sets = st.lists(st.sampled_from(PEERS), max_size=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("block"), peer_sets),
        st.tuples(st.just("unblock"), peer_sets),
        st.tuples(st.just("heal"), st.just([])),
        st.tuples(st.just("bad"), st.just(["not-a-peer-id", PEERS[0]])),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(operations)
async def test_random_block_unblock_heal_sequences_match_the_set_model(
    ops: list[tuple[str, list[str]]],
) -> None:
    gate = FaultGate()
    model: set[str] = set()
    for op, peers in ops:
        if op == "block":
            await gate.block(peers)
            model |= set(peers)
        elif op == "unblock":
            await gate.unblock(peers)
            model -= set(peers)
        elif op == "heal":
            await gate.heal()
            model.clear()
        else:
            with pytest.raises(InvalidPeerId):
                await gate.block(peers)
        assert gate.blocked() == frozenset(model)
        assert all(gate.is_blocked(p) == (p in model) for p in PEERS)
    stats = gate.stats()
    assert stats["block"] - stats["unblock"] == len(model)


# ----- message faults --------------------------------------------------------------------------


def pipe() -> tuple[TrioStreamAdapter, TrioStreamAdapter]:
    left, right = trio.testing.memory_stream_pair()
    return TrioStreamAdapter(left), TrioStreamAdapter(right)


async def send_all(
    gate: FaultGate, stream: TrioStreamAdapter, ns: range, peer: str = PEER_X
) -> None:
    for n in ns:
        await write_message(stream, {"type": "m", "n": n}, timeout_s=2, gate=gate, peer=peer)


async def receive_until_end(stream: TrioStreamAdapter) -> list[int]:
    got = []
    with trio.fail_after(3):
        while (message := await read_message(stream, max_size=1024, timeout_s=3))["type"] != "end":
            got.append(int(message["n"]))
    return got


async def end(stream: TrioStreamAdapter) -> None:
    await write_message(stream, {"type": "end"}, timeout_s=2)


async def test_drop_1_drops_every_frame_and_reports_each(nursery: trio.Nursery) -> None:
    reported: list[tuple[str, dict[str, Any]]] = []
    gate = FaultGate(on_fault=lambda kind, detail: reported.append((kind, detail)))
    tx, rx = pipe()
    gate.set_message_faults(MessageFaults(drop=1.0, seed=1))
    await send_all(gate, tx, range(5))
    gate.clear_message_faults()
    await send_all(gate, tx, range(5, 6))
    await end(tx)
    assert await receive_until_end(rx) == [5]
    assert gate.stats()["drop"] == 5
    assert [k for k, _ in reported] == ["drop"] * 5 + ["messages_cleared"]
    assert reported[0][1]["peer"] == PEER_X


def test_lifting_message_faults_is_reported_once_and_only_when_some_were_set() -> None:
    # The node treats it as a network change: a request sent while they held may be lost.
    reported: list[str] = []
    gate = FaultGate(on_fault=lambda kind, detail: reported.append(kind))
    gate.clear_message_faults()
    assert reported == []
    gate.set_message_faults(MessageFaults(delay_ms=5))
    gate.clear_message_faults()
    gate.clear_message_faults()
    assert reported == ["messages_cleared"]
    assert gate.stats()["messages_cleared"] == 1


async def test_duplicate_1_delivers_every_frame_twice() -> None:
    gate = FaultGate()
    tx, rx = pipe()
    gate.set_message_faults(MessageFaults(duplicate=1.0))
    await send_all(gate, tx, range(3))
    await end(tx)
    assert await receive_until_end(rx) == [0, 0, 1, 1, 2, 2]
    assert gate.stats()["duplicate"] == 3


async def test_delay_holds_each_frame_back_by_at_least_the_delay() -> None:
    gate = FaultGate()
    tx, rx = pipe()
    gate.set_message_faults(MessageFaults(delay_ms=80))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all, gate, tx, range(1))
        message = await read_message(rx, max_size=1024, timeout_s=2)
    assert message["n"] == 0
    assert trio.current_time() - start >= 0.08
    assert gate.stats()["delay"] == 1


async def test_reorder_swaps_two_consecutive_frames_and_flushes_a_lone_one_on_timeout() -> None:
    gate = FaultGate()
    tx, rx = pipe()
    async with gate.running():
        gate.set_message_faults(MessageFaults(reorder=True, reorder_timeout_ms=100))
        await send_all(gate, tx, range(4))
        start = trio.current_time()
        await send_all(gate, tx, range(4, 5))  # no successor: sent by the timer
        assert (await read_message(rx, max_size=1024, timeout_s=2))["n"] == 1
        got = [(await read_message(rx, max_size=1024, timeout_s=2))["n"] for _ in range(4)]
        assert got == [0, 3, 2, 4]
        assert trio.current_time() - start >= 0.1
    assert gate.stats()["reorder"] == 3 and gate.stats()["reorder_flush"] == 1


async def test_reorder_needs_a_running_gate_and_specs_are_validated() -> None:
    gate = FaultGate()
    with pytest.raises(InvalidFaultSpec):
        gate.set_message_faults(MessageFaults(reorder=True))
    for bad in ({"drop": 1.5}, {"duplicate": -0.1}, {"delay_ms": -1}, {"drop": True}):
        with pytest.raises(InvalidFaultSpec):
            MessageFaults(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidPeerId):
        MessageFaults(peers=frozenset({"junk"}))


async def _seeded_run(seed: int) -> list[int]:
    gate = FaultGate()
    tx, rx = pipe()
    async with gate.running():
        gate.set_message_faults(
            MessageFaults(drop=0.3, duplicate=0.3, reorder=True, reorder_probability=0.3, seed=seed)
        )
        async with trio.open_nursery() as nursery:
            result: list[int] = []

            async def reader() -> None:
                result.extend(await receive_until_end(rx))

            nursery.start_soon(reader)
            await send_all(gate, tx, range(40))
            gate.clear_message_faults()
            await send_all(gate, tx, range(40, 41))  # releases any held frame first
            await end(tx)
    return result


async def test_seeded_message_faults_are_reproducible() -> None:
    first, again, other = await _seeded_run(7), await _seeded_run(7), await _seeded_run(8)
    assert first == again
    assert first != other
    assert first != list(range(41))  # the faults did something


async def test_message_faults_only_hit_the_chosen_peers() -> None:
    gate = FaultGate()
    tx, rx = pipe()
    gate.set_message_faults(MessageFaults(drop=1.0, peers=frozenset({PEER_X})))
    other = peer_id_from_seed(b"\x72" * 32)
    await send_all(gate, tx, range(2), peer=PEER_X)
    await send_all(gate, tx, range(2, 4), peer=other)
    await write_message(tx, {"type": "m", "n": 4}, timeout_s=2)  # no gate: untouched
    await end(tx)
    assert await receive_until_end(rx) == [2, 3, 4]


async def test_kind_faults_drop_only_requests_of_those_types_and_no_frames() -> None:
    gate = FaultGate()
    gate.set_message_faults(MessageFaults(drop=1.0, kinds=frozenset({"COMMIT"}), seed=1))
    assert gate.drops_request(PEER_X, "COMMIT")
    assert not gate.drops_request(PEER_X, "OFFER")
    assert not gate.message_faults_apply_to(PEER_X)  # whole requests, never frames
    assert gate.stats()["drop"] == 1
    gate.set_message_faults(MessageFaults(drop=0.0, kinds=frozenset({"COMMIT"})))
    assert not gate.drops_request(PEER_X, "COMMIT")
    with pytest.raises(InvalidFaultSpec):
        MessageFaults(kinds="COMMIT")  # type: ignore[arg-type]


async def test_message_faults_on_a_real_stream_use_its_peer_and_protocol(
    spawn_hosts: HostSpawner, nursery: trio.Nursery
) -> None:
    a, b = await spawn_hosts(2)
    reported: list[dict[str, Any]] = []
    gate_a = FaultGate(on_fault=lambda kind, detail: reported.append(detail))
    received: list[int] = []
    done = trio.Event()

    async def collect(stream: INetStream) -> None:
        try:
            while True:
                received.append(int((await read_message(stream, max_size=64, timeout_s=2))["n"]))
        except (ConnectionClosedCleanly, TruncatedFrame, StreamBroken):
            done.set()

    b.set_stream_handler(TProtocol(ECHO), collect)
    await dial(a, full_addrs(b)[0], timeout_s=3)
    gate_a.set_message_faults(MessageFaults(duplicate=1.0, peers=frozenset({pid(b)})))
    stream = await a.new_stream(b.get_id(), [TProtocol(ECHO)])
    for n in range(2):
        await write_message(stream, {"type": "m", "n": n}, timeout_s=2, gate=gate_a)
    await stream.close()
    with trio.fail_after(3):
        await done.wait()
    assert received == [0, 0, 1, 1]
    assert reported[0]["peer"] == pid(b) and reported[0]["protocol"] == ECHO


# ----- clock and stats -------------------------------------------------------------------------


def test_clock_offset_drives_the_node_clock_and_is_counted() -> None:
    clock = NodeClock()
    gate = FaultGate(clock=clock)
    gate.set_clock_offset(-2.5)
    assert clock.offset_ns == gate.clock_offset_ns == -2_500_000_000
    assert clock.wall_ns() < NodeClock().wall_ns() - 2_000_000_000
    gate.set_clock_offset(0)
    assert clock.offset_ns == 0
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(InvalidFaultSpec):
            gate.set_clock_offset(bad)  # type: ignore[arg-type]
    assert gate.stats()["clock_offset"] == 2
    assert set(gate.stats()) == set(FAULT_KINDS)


async def test_a_failing_fault_callback_never_breaks_the_data_path() -> None:
    def explode(kind: str, detail: dict[str, Any]) -> None:
        raise RuntimeError("history is full")

    gate = FaultGate(on_fault=explode)
    tx, rx = pipe()
    gate.set_message_faults(MessageFaults(duplicate=1.0))
    await send_all(gate, tx, range(1))
    await end(tx)
    assert await receive_until_end(rx) == [0, 0]
