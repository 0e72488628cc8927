"""The admin client: typed failures for every way the node can be absent, slow or broken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from igor_p2p.errors import IgorError
from igor_p2p.node.admin_client import (
    AdminCallFailed,
    AdminClient,
    AdminConnectionLost,
    AdminProtocolError,
    AdminTimeout,
    AdminUnavailable,
    call_admin,
)

from .admin_helpers import T, make_stale_socket, short_socket_dir, start_server


@pytest.fixture
def socket_path() -> Iterator[Path]:
    with short_socket_dir() as directory:
        yield directory / "admin.sock"


class BudgetTooLow(IgorError):
    pass


async def echo(params: dict[str, Any]) -> Any:
    return params


async def refuse(params: dict[str, Any]) -> Any:
    raise BudgetTooLow("budget 5 < 10")


async def hang(params: dict[str, Any]) -> Any:
    await trio.sleep_forever()


REGISTRY = {"echo": echo, "refuse": refuse, "hang": hang}


async def _fake_node(path: Path, reply: bytes, *, task_status: trio.TaskStatus[None]) -> None:
    """A listener that answers every connection with ``reply`` and closes."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(4)
    listener = trio.SocketListener(sock)
    task_status.started()
    async with listener:
        while True:
            stream = await listener.accept()
            async with stream:
                await stream.receive_some(1 << 16)
                await stream.send_all(reply)


async def test_missing_socket_raises_unavailable_with_a_hint(socket_path: Path) -> None:
    with pytest.raises(AdminUnavailable, match=r"is the node running\? \(igor node run --data-dir"):
        async with AdminClient.connect(socket_path, timeout_s=T):
            pass


async def test_stale_socket_raises_unavailable(socket_path: Path) -> None:
    make_stale_socket(socket_path)
    with pytest.raises(AdminUnavailable, match="is the node running"):
        async with AdminClient.connect(socket_path, timeout_s=T):
            pass


def test_call_admin_to_a_missing_socket_raises_unavailable(socket_path: Path) -> None:
    with pytest.raises(AdminUnavailable):
        call_admin(socket_path, "ping", timeout_s=T)


async def test_error_response_raises_call_failed_with_type_and_message(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminCallFailed) as failed:
            await client.call("refuse")
        assert (failed.value.error_type, failed.value.message) == ("BudgetTooLow", "budget 5 < 10")
        assert isinstance(failed.value, IgorError)
        assert await client.call("echo", blob=b"\x01\xff") == {"blob": "01ff"}


async def test_slow_answer_raises_admin_timeout_and_retires_the_connection(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminTimeout):
            await client.request("hang", timeout_s=0.1)
        with pytest.raises(AdminConnectionLost):  # the late answer would be out of step
            await client.call("ping")
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("ping") == "pong"


async def test_call_admin_works_from_a_thread_that_is_not_running_trio(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    result = await trio.to_thread.run_sync(call_admin, socket_path, "echo", {"n": 3})
    assert result == {"n": 3}

    def failing_call() -> Any:
        return call_admin(socket_path, "refuse", timeout_s=T)

    with pytest.raises(AdminCallFailed) as failed:
        await trio.to_thread.run_sync(failing_call)
    assert failed.value.error_type == "BudgetTooLow"

    def timing_out_call() -> Any:
        return call_admin(socket_path, "hang", timeout_s=0.2)

    with pytest.raises(AdminTimeout):
        await trio.to_thread.run_sync(timing_out_call)


async def test_request_over_the_line_limit_reports_frame_too_large(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY, max_line=4096)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminCallFailed) as failed:
            await client.call("echo", blob="x" * (1 << 20))
        assert failed.value.error_type == "FrameTooLarge"
        with pytest.raises(AdminConnectionLost):
            await client.call("ping")


async def test_node_closing_without_an_answer_raises_connection_lost(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await nursery.start(_fake_node, socket_path, b"")
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminConnectionLost):
            await client.call("ping")


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\n",
        b"[]\n",
        b'{"id": 1, "ok": "yes"}\n',
        b'{"id": 1, "ok": true}\n',
        b'{"id": 1, "ok": false, "error": "bad"}\n',
        b'{"id": 2, "ok": true, "result": 1}\n',
        b'{"id": true, "ok": true, "result": 1}\n',
    ],
)
async def test_invalid_response_raises_protocol_error(
    nursery: trio.Nursery, socket_path: Path, reply: bytes
) -> None:
    await nursery.start(_fake_node, socket_path, reply)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminProtocolError):
            await client.call("ping")
