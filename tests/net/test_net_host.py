"""Host workarounds: Noise only (G3), no dial floor (G6), closed on exit (G2), redial (G13)."""

import socket

import multiaddr
import pytest
import trio
from conftest import HostSpawner, fresh_seed
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from igor_p2p.net.errors import DialFailed, InvalidAddress
from igor_p2p.net.host import (
    HostConfig,
    build_host,
    dial,
    full_addrs,
    peer_info_from_addr,
    running_host,
)
from igor_p2p.net.keys import key_pair_from_seed, peer_id_from_seed

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def _tcp_port(host: IHost) -> int:
    return int(host.get_addrs()[0].value_for_protocol("tcp"))


async def _port_accepts(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


def _plaintext_only_host() -> IHost:
    kp = key_pair_from_seed(fresh_seed())
    return new_host(
        key_pair=kp,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(kp)},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


def test_host_identity_is_the_seed_key() -> None:
    seed = fresh_seed()
    assert build_host(HostConfig(key_seed=seed)).get_id().to_base58() == peer_id_from_seed(seed)


async def test_plaintext_only_dialer_is_refused(spawn_hosts: HostSpawner) -> None:
    """G3: our hosts speak Noise only; a dialer offering only /plaintext/2.0.0 gets nowhere."""
    (server,) = await spawn_hosts(1)
    dialer = _plaintext_only_host()
    async with running_host(dialer, LOOPBACK):
        with pytest.raises(DialFailed):
            await dial(dialer, full_addrs(server)[0], timeout_s=3)
        assert server.get_network().connections == {}

        # Control: a default py-libp2p host accepts the very same plaintext dialer.
        default_host = new_host(key_pair=key_pair_from_seed(fresh_seed()))
        async with running_host(default_host, LOOPBACK):
            await dial(dialer, full_addrs(default_host)[0], timeout_s=3)
            assert default_host.get_id() in dialer.get_network().connections


async def test_connect_takes_less_than_100_ms(spawn_hosts: HostSpawner) -> None:
    """G6: max_connections_per_peer=1 removes the 250 ms happy-eyeballs wait."""
    a, b, c = await spawn_hosts(3)
    start = trio.current_time()
    await dial(a, full_addrs(b)[0], timeout_s=3)
    first = trio.current_time() - start
    start = trio.current_time()
    await dial(c, full_addrs(b)[0], timeout_s=3)
    second = trio.current_time() - start
    assert first < 0.1, first
    assert second < 0.1, second


async def test_dial_reuses_an_existing_connection(spawn_hosts: HostSpawner) -> None:
    a, b = await spawn_hosts(2)
    assert await dial(a, full_addrs(b)[0], timeout_s=3) == b.get_id()
    assert await dial(a, full_addrs(b)[0], timeout_s=3) == b.get_id()
    assert len(a.get_network().connections[b.get_id()]) == 1


async def test_port_refuses_connections_after_normal_exit() -> None:
    """G2: running_host closes the listener when its block ends normally."""
    host = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(host, LOOPBACK):
        port = _tcp_port(host)
        assert await _port_accepts(port)
    assert not await _port_accepts(port)


async def test_port_refuses_connections_after_cancellation() -> None:
    """G2: ... and when the block is cancelled from outside."""
    host = build_host(HostConfig(key_seed=fresh_seed()))
    started = trio.Event()

    async def run() -> None:
        async with running_host(host, LOOPBACK):
            started.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await started.wait()
        port = _tcp_port(host)
        assert await _port_accepts(port)
        nursery.cancel_scope.cancel()
    assert not await _port_accepts(port)


async def test_plain_host_run_leaks_the_listener() -> None:
    """Pins G2 itself: leaving host.run() without close() leaves the port open."""
    host = build_host(HostConfig(key_seed=fresh_seed()))
    try:
        async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK[0])]):
            port = _tcp_port(host)
        assert await _port_accepts(port)
    finally:
        with trio.CancelScope(shield=True):
            await host.close()
    assert not await _port_accepts(port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redial_succeeds_once_the_peer_is_back() -> None:
    """G13: a failed dial must not blacklist the peer for 60 s."""
    port = _free_port()
    seed = fresh_seed()
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_seed(seed)}"
    dialer = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(dialer, LOOPBACK):
        with pytest.raises(DialFailed):
            await dial(dialer, addr, timeout_s=3)
        server = build_host(HostConfig(key_seed=seed))
        async with running_host(server, [f"/ip4/127.0.0.1/tcp/{port}"]):
            assert await dial(dialer, addr, timeout_s=3) == ID.from_base58(peer_id_from_seed(seed))


async def test_dial_timeout_and_bad_addresses_are_typed() -> None:
    with pytest.raises(InvalidAddress):
        peer_info_from_addr("/ip4/127.0.0.1/tcp/1")  # no /p2p/
    with pytest.raises(InvalidAddress):
        peer_info_from_addr("garbage")
    # A listener that accepts TCP but never speaks: the Noise handshake hangs -> timeout.
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    dialer = build_host(HostConfig(key_seed=fresh_seed()))
    try:
        async with running_host(dialer, LOOPBACK):
            start = trio.current_time()
            with pytest.raises(DialFailed):
                await dial(
                    dialer,
                    f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_seed(fresh_seed())}",
                    timeout_s=0.3,
                )
            assert trio.current_time() - start < 2
    finally:
        listener.close()


async def test_plain_connect_after_a_failed_dial_is_refused_by_the_negative_cache() -> None:
    """Pins G13 itself: without our eviction the swarm refuses to redial a revived peer."""
    port = _free_port()
    seed = fresh_seed()
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_seed(seed)}"
    dialer = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(dialer, LOOPBACK):
        with pytest.raises(DialFailed):
            await dial(dialer, addr, timeout_s=3)
        server = build_host(HostConfig(key_seed=seed))
        async with running_host(server, [f"/ip4/127.0.0.1/tcp/{port}"]):
            with pytest.raises(Exception):  # noqa: B017 - SwarmException, whatever its shape
                await dialer.connect(peer_info_from_addr(addr))
