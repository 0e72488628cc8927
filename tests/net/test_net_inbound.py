"""Inbound connections: slots are freed on close (G15), silent sockets are cut after the
handshake timeout (G16), and one remote IP can hold only a few pending handshakes."""

import trio
from conftest import HostSpawner, fresh_seed
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.network.config import ConnectionConfig

from igor_p2p.net.errors import DialFailed
from igor_p2p.net.host import HostConfig, build_host, dial, full_addrs, inbound_guard, running_host
from igor_p2p.net.keys import key_pair_from_seed

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
ATTACKER_IP = "127.0.0.2"
"""Raw sockets come from another loopback address than the honest peers (127.0.0.1)."""


def _port(host: IHost) -> int:
    return int(host.get_transport_addrs()[0].value_for_protocol("tcp"))


def _borrowed(host: IHost) -> int:
    return int(host.get_network()._inbound_limiter.borrowed_tokens)  # type: ignore[attr-defined]


async def _wait_until(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a state no event announces (the swarm's limiter and connection table)."""
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


async def _connect_and_close(client: IHost, server: IHost, times: int) -> int:
    """Connect and disconnect ``times`` times; returns how many connections were admitted."""
    admitted = 0
    for _ in range(times):
        try:
            await dial(client, full_addrs(server)[0], timeout_s=3)
        except DialFailed:
            continue
        admitted += 1
        await client.get_network().close_peer(server.get_id())
        await _wait_until(lambda: not server.get_network().get_connections(client.get_id()))
    return admitted


async def test_inbound_slots_are_freed_when_connections_close(spawn_hosts: HostSpawner) -> None:
    """G15: 310 connections in a node's life (10 clients, each connecting and closing 31
    times in a row; py-libp2p's close waits 0.2 s) with the default 250 inbound slots are all
    admitted, and afterwards no slot is held."""
    server, *clients = await spawn_hosts(11)
    admitted: list[int] = []

    async def client_loop(client: IHost) -> None:
        admitted.append(await _connect_and_close(client, server, 31))

    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(client_loop, client)
    assert sum(admitted) == 310
    await _wait_until(lambda: _borrowed(server) == 0)
    guard = inbound_guard(server)
    assert guard is not None and guard.admitted >= 310


async def test_plain_swarm_keeps_a_slot_per_past_inbound_connection() -> None:
    """Pins G15 itself: py-libp2p's own handler keeps each slot until the swarm stops, so a
    cap of 4 (max 6 − min 2) admits 4 connections in the node's whole life."""
    kp = key_pair_from_seed(fresh_seed())
    plain = new_host(
        key_pair=kp,
        connection_config=ConnectionConfig(
            max_connections=6,
            min_connections=2,
            low_watermark=2,
            high_watermark=6,
            max_connections_per_peer=1,
        ),
    )
    client = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(plain, LOOPBACK), running_host(client, LOOPBACK):
        assert await _connect_and_close(client, plain, 6) == 4
        assert _borrowed(plain) == 4


async def _raw_sockets(port: int, count: int) -> list[trio.SocketStream]:
    return [
        await trio.open_tcp_stream("127.0.0.1", port, local_address=ATTACKER_IP)
        for _ in range(count)
    ]


async def _close_all(streams: list[trio.SocketStream]) -> None:
    with trio.CancelScope(shield=True):
        for s in streams:
            await s.aclose()


async def test_270_silent_sockets_from_one_ip_do_not_keep_a_new_peer_out(
    spawn_hosts: HostSpawner,
) -> None:
    """G16 + per-IP cap: 270 raw TCP sockets that never speak Noise take at most 16 pending
    slots; a peer from another address is admitted at once."""
    server, honest = await spawn_hosts(2)
    guard = inbound_guard(server)
    assert guard is not None
    sockets = await _raw_sockets(_port(server), 270)
    try:
        await _wait_until(lambda: guard.refused_per_ip + guard.pending[ATTACKER_IP] >= 270)
        assert guard.pending[ATTACKER_IP] <= 16
        with trio.fail_after(2):
            await dial(honest, full_addrs(server)[0], timeout_s=2)
    finally:
        await _close_all(sockets)


async def test_270_silent_sockets_keep_a_plain_swarm_closed_to_everyone() -> None:
    """The control: py-libp2p's defaults (250 slots, 10 s handshake, no per-IP cap) refuse
    the same honest peer."""
    plain = new_host(
        key_pair=key_pair_from_seed(fresh_seed()),
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    honest = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(plain, LOOPBACK), running_host(honest, LOOPBACK):
        sockets = await _raw_sockets(_port(plain), 270)
        try:
            await _wait_until(lambda: _borrowed(plain) == 250)
            refused = False
            try:
                await dial(honest, full_addrs(plain)[0], timeout_s=2)
            except DialFailed:
                refused = True
            assert refused
        finally:
            await _close_all(sockets)


async def test_a_socket_that_never_handshakes_is_closed_after_the_handshake_timeout(
    spawn_hosts: HostSpawner,
) -> None:
    """G16: the server hangs up on a silent socket after ``handshake_timeout_s``, which frees
    its pending slot."""
    (server,) = await spawn_hosts(1, handshake_timeout_s=0.5)
    guard = inbound_guard(server)
    assert guard is not None
    (sock,) = await _raw_sockets(_port(server), 1)
    try:
        start = trio.current_time()
        with trio.fail_after(5):
            while await sock.receive_some(4096):  # the multistream header, then EOF
                pass
        assert 0.4 <= trio.current_time() - start < 3.0
        await _wait_until(lambda: guard.pending[ATTACKER_IP] == 0)
        assert guard.handshakes_failed >= 1
    finally:
        await _close_all([sock])


async def test_pending_handshakes_above_the_per_ip_cap_are_closed_at_once(
    spawn_hosts: HostSpawner,
) -> None:
    (server,) = await spawn_hosts(1, max_pending_per_ip=3)
    guard = inbound_guard(server)
    assert guard is not None
    sockets = await _raw_sockets(_port(server), 3)
    try:
        await _wait_until(lambda: guard.pending[ATTACKER_IP] == 3)
        (extra,) = await _raw_sockets(_port(server), 1)
        sockets.append(extra)
        with trio.fail_after(1):  # closed before any byte: EOF right away
            assert await extra.receive_some(4096) == b""
        assert guard.refused_per_ip == 1
    finally:
        await _close_all(sockets)
