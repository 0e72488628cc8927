"""G27: a stream of small messages costs one Yamux frame each, not two (py-libp2p answers every
read with a WINDOW_UPDATE); large transfers still get their window back."""

from typing import Any

import pytest
import trio
from conftest import HostSpawner
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from igor_p2p.net import host as host_module
from igor_p2p.net.host import dial, full_addrs

SINK = TProtocol("/igor-test/sink/1.0.0")
MESSAGES = 50


async def _count_window_updates(
    spawn_hosts: HostSpawner,
    monkeypatch: pytest.MonkeyPatch,
    payload: bytes,
    count: int,
    *,
    stock: bool = False,
) -> int:
    server, client = await spawn_hosts(2)
    if stock:  # after build_host, which installs ours
        monkeypatch.setattr(
            YamuxStream, "_auto_tune_and_send_window_update", host_module.LIBP2P_WINDOW_UPDATE
        )
    updates = [0]
    send = YamuxStream.send_window_update

    async def counting(self: Any, increment: int, skip_lock: bool = False) -> None:
        updates[0] += 1
        await send(self, increment, skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counting)
    done = trio.Event()

    async def sink(stream: INetStream) -> None:
        got = 0
        while got < count * len(payload):
            got += len(await stream.read(65536))
        await stream.write(b"k")
        done.set()

    server.set_stream_handler(SINK, sink)
    await dial(client, full_addrs(server)[0], timeout_s=3)
    stream = await client.new_stream(server.get_id(), [SINK])
    with trio.fail_after(20):
        for _ in range(count):
            await stream.write(payload)
            await trio.sleep(0)  # one read per message on the server
        assert await stream.read(1) == b"k"
        await done.wait()
    return updates[0]


async def test_small_messages_get_no_window_update_each(
    spawn_hosts: HostSpawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _count_window_updates(spawn_hosts, monkeypatch, b"x" * 200, MESSAGES) <= 2


async def test_py_libp2p_sends_a_window_update_per_read(
    spawn_hosts: HostSpawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins G27 itself."""
    updates = await _count_window_updates(
        spawn_hosts, monkeypatch, b"x" * 200, MESSAGES, stock=True
    )
    assert updates >= 30


async def test_8_mib_through_a_256_kib_window_flows(
    spawn_hosts: HostSpawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Window updates still come once half the window is read: the sender never stalls."""
    updates = await _count_window_updates(spawn_hosts, monkeypatch, b"y" * 65536, 128)
    assert 4 <= updates <= 128
