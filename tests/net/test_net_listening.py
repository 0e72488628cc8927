"""Listening: a port in use is a clear error (G23), wildcard listeners announce real interface
addresses (G24)."""

import socket

import pytest
import trio
from conftest import fresh_seed

from igor_p2p.net import listening
from igor_p2p.net.host import HostConfig, build_host, dial, full_addrs, running_host
from igor_p2p.net.listening import ListenFailed, wildcard_warning


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_second_node_on_a_port_in_use_fails_with_a_clear_error() -> None:
    """G23: without SO_REUSEPORT the second bind fails, and the failure is an error that
    says the port is in use (py-libp2p only logs it and runs with no listener)."""
    port = _free_port()
    listen = [f"/ip4/127.0.0.1/tcp/{port}"]
    first = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(first, listen):
        second = build_host(HostConfig(key_seed=fresh_seed()))
        with pytest.raises(ListenFailed, match="already in use"):
            async with running_host(second, listen):
                pytest.fail("the second node must not start")
        # The first node still gets every connection.
        dialer = build_host(HostConfig(key_seed=fresh_seed()))
        async with running_host(dialer):
            for _ in range(5):
                assert await dial(dialer, full_addrs(first)[0], timeout_s=3) == first.get_id()
                await dialer.get_network().close_peer(first.get_id())


async def test_a_port_held_by_another_program_is_an_error() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        host = build_host(HostConfig(key_seed=fresh_seed()))
        with pytest.raises(ListenFailed, match=f"port {port} is already in use"):
            async with running_host(host, [f"/ip4/127.0.0.1/tcp/{port}"]):
                pass


async def test_an_address_not_on_this_machine_is_named() -> None:
    host = build_host(HostConfig(key_seed=fresh_seed()))
    with pytest.raises(ListenFailed, match="not an address of this machine"):
        async with running_host(host, ["/ip4/192.0.2.77/tcp/0"]):
            pass


def test_py_libp2p_sets_so_reuseport_and_ours_does_not() -> None:
    """Pins G23 itself: py-libp2p's own flag function sets SO_REUSEPORT."""
    with socket.socket() as theirs, socket.socket() as ours:
        listening.LIBP2P_REUSE_FLAGS(theirs)  # type: ignore[arg-type]
        listening.drop_reuseport()
        import libp2p.transport.tcp.tcp as tcp

        tcp._set_reuse_flags(ours)  # type: ignore[arg-type]
        assert theirs.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1


async def test_a_wildcard_listener_announces_interface_addresses_not_0_0_0_0() -> None:
    """G24: py-libp2p would advertise /ip4/0.0.0.0/…; ours advertises this machine's
    addresses (127.0.0.1 among them), and a peer can dial what it announces."""
    host = build_host(HostConfig(key_seed=fresh_seed()))
    async with running_host(host, ["/ip4/0.0.0.0/tcp/0"]):
        addrs = full_addrs(host)
        port = host.get_transport_addrs()[0].value_for_protocol("tcp")
        assert not [a for a in addrs if "/0.0.0.0/" in a]
        loopback = f"/ip4/127.0.0.1/tcp/{port}/p2p/{host.get_id()}"
        assert loopback in addrs
        assert addrs[-1] == loopback  # non-loopback addresses first
        dialer = build_host(HostConfig(key_seed=fresh_seed()))
        async with running_host(dialer):
            with trio.fail_after(5):
                assert await dial(dialer, loopback, timeout_s=3) == host.get_id()


async def test_announce_replaces_the_listen_addresses() -> None:
    announce = "/ip4/198.51.100.7/tcp/4101"
    host = build_host(HostConfig(key_seed=fresh_seed(), announce=(announce,)))
    async with running_host(host, ["/ip4/0.0.0.0/tcp/0"]):
        assert full_addrs(host) == [f"{announce}/p2p/{host.get_id()}"]


def test_wildcard_without_a_reachable_address_warns_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listening, "interface_ips", lambda proto: ["127.0.0.1"])
    message = wildcard_warning(["/ip4/0.0.0.0/tcp/4101"], [])
    assert message is not None and "--announce /ip4/" in message
    assert wildcard_warning(["/ip4/0.0.0.0/tcp/4101"], ["/ip4/198.51.100.7/tcp/4101"]) is None
    assert wildcard_warning(["/ip4/127.0.0.1/tcp/4101"], []) is None
    monkeypatch.setattr(listening, "interface_ips", lambda proto: ["192.0.2.5", "127.0.0.1"])
    assert wildcard_warning(["/ip4/0.0.0.0/tcp/4101"], []) is None
