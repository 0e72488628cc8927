"""guarded(): a failing handler never kills the host (G1); per-peer inbound stream limit."""

import logging

import pytest
import trio
from conftest import HostSpawner
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.network.stream.exceptions import StreamError

from igor_p2p.net.handlers import (
    HandlerCounters,
    PeerStreamLimiter,
    guarded,
    set_guarded_handler,
)
from igor_p2p.net.host import dial, full_addrs

LOG = logging.getLogger("tests.net.handlers")
ECHO = TProtocol("/igor-test/echo/1")
BOOM = TProtocol("/igor-test/boom/1")
HOLD = TProtocol("/igor-test/hold/1")


async def _echo(stream) -> None:  # type: ignore[no-untyped-def]
    data = await stream.read(100)
    await stream.write(data)
    await stream.close()


async def _boom(stream) -> None:  # type: ignore[no-untyped-def]
    await stream.read(1)
    raise ValueError("handler bug")


async def _boom_in_group(stream) -> None:  # type: ignore[no-untyped-def]
    async def child() -> None:
        raise KeyError("child bug")

    await stream.read(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)


async def _echo_round_trip(client, server) -> bytes:  # type: ignore[no-untyped-def]
    stream = await client.new_stream(server.get_id(), [ECHO])
    await stream.write(b"ping")
    with trio.fail_after(3):
        return bytes(await stream.read(100))


@pytest.mark.parametrize("bad_handler", [_boom, _boom_in_group])
async def test_raising_handler_does_not_kill_the_host(
    spawn_hosts: HostSpawner, bad_handler
) -> None:  # type: ignore[no-untyped-def]
    """G1: after a handler raised, the same connection and a new connection still work."""
    server, client, late_client = await spawn_hosts(3)
    counters = HandlerCounters()
    set_guarded_handler(server, ECHO, _echo, log=LOG, counters=counters)
    set_guarded_handler(server, BOOM, bad_handler, log=LOG, counters=counters)
    await dial(client, full_addrs(server)[0], timeout_s=3)

    bad = await client.new_stream(server.get_id(), [BOOM])
    await bad.write(b"x")
    with trio.fail_after(3), pytest.raises(StreamError):  # reset (or EOF, G4) by the guard
        await bad.read(1)
        await bad.read(1)
    assert counters.failed[str(BOOM)] == 1

    assert await _echo_round_trip(client, server) == b"ping"  # same connection
    await dial(late_client, full_addrs(server)[0], timeout_s=3)
    assert await _echo_round_trip(late_client, server) == b"ping"  # new connection
    with trio.fail_after(3):  # the echo arrives before the server's handler has returned
        while counters.completed[str(ECHO)] < 2:
            await trio.sleep(0.01)
    assert counters.completed[str(ECHO)] == 2


async def test_streams_over_the_per_peer_limit_are_reset(spawn_hosts: HostSpawner) -> None:
    server, client, other = await spawn_hosts(3)
    entered = trio.Semaphore(0)
    release = trio.Event()

    async def hold(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.read(1)
        entered.release()
        await release.wait()
        await stream.write(b"k")
        await stream.close()

    wrapped = set_guarded_handler(server, HOLD, hold, log=LOG, limiter=PeerStreamLimiter(2))
    for peer in (client, other):
        await dial(peer, full_addrs(server)[0], timeout_s=3)

    held = []
    for _ in range(2):
        s = await client.new_stream(server.get_id(), [HOLD])
        await s.write(b"x")
        held.append(s)
    with trio.fail_after(3):
        await entered.acquire()
        await entered.acquire()

    # The guard resets the excess stream right after negotiation: new_stream itself or the
    # first read fails, depending on who wins the race.
    with trio.fail_after(3), pytest.raises((StreamError, StreamFailure)):
        excess = await client.new_stream(server.get_id(), [HOLD])
        await excess.write(b"x")
        await excess.read(1)
    assert wrapped.counters.over_limit[str(HOLD)] == 1

    # Another peer is not affected by this peer's streams.
    s = await other.new_stream(server.get_id(), [HOLD])
    await s.write(b"x")
    with trio.fail_after(3):
        await entered.acquire()
    release.set()
    with trio.fail_after(3):
        for stream in [*held, s]:
            assert await stream.read(1) == b"k"
        while wrapped.counters.completed[str(HOLD)] < 3:  # handlers return after the reply
            await trio.sleep(0.01)
    assert wrapped.counters.completed[str(HOLD)] == 3
    assert wrapped.limiter.active(str(client.get_id())) == 0


class _FakeStream:
    class _Conn:
        peer_id = "peer-A"

    muxed_conn = _Conn()

    def __init__(self) -> None:
        self.resets = 0

    async def reset(self) -> None:
        self.resets += 1


async def test_outer_cancellation_propagates_and_resets_the_stream() -> None:
    """Cancelling the node is never swallowed by the guard."""

    async def forever(stream) -> None:  # type: ignore[no-untyped-def]
        await trio.sleep_forever()

    wrapped = guarded(forever, protocol="/p", log=LOG)
    stream = _FakeStream()
    with trio.move_on_after(0.05) as scope:
        await wrapped(stream)  # type: ignore[arg-type]
    assert scope.cancelled_caught
    assert stream.resets == 1
    assert wrapped.counters.cancelled["/p"] == 1
    assert wrapped.counters.failed["/p"] == 0
    assert wrapped.limiter.active("peer-A") == 0


async def test_failure_inside_a_handler_nursery_is_caught_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def group(stream) -> None:  # type: ignore[no-untyped-def]
        async def child(exc: Exception) -> None:
            raise exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, ValueError("a"))
            nursery.start_soon(child, KeyError("b"))

    wrapped = guarded(group, protocol="/p", log=LOG)
    stream = _FakeStream()
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        await wrapped(stream)  # type: ignore[arg-type]
    assert stream.resets == 1
    assert wrapped.counters.failed["/p"] == 1
    assert len([r for r in caplog.records if r.name == LOG.name]) == 1


async def test_keyboard_interrupt_is_not_swallowed() -> None:
    async def interrupt(stream) -> None:  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    wrapped = guarded(interrupt, protocol="/p", log=LOG)
    with pytest.raises(KeyboardInterrupt):
        await wrapped(_FakeStream())  # type: ignore[arg-type]
