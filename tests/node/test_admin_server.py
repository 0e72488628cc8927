"""The admin socket server: framing, typed errors, limits, socket file lifecycle."""

from __future__ import annotations

import enum
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from igor_p2p.errors import IgorError
from igor_p2p.node.admin import (
    DEFAULT_MAX_LINE,
    AdminConfig,
    AdminServer,
    AdminSocketError,
    AdminSocketInUse,
    InvalidAdminRegistry,
)
from igor_p2p.node.admin_client import AdminCallFailed, AdminClient, AdminUnavailable

from .admin_helpers import RawConnection, T, make_stale_socket, short_socket_dir, start_server


@pytest.fixture
def socket_path() -> Iterator[Path]:
    with short_socket_dir() as directory:
        yield directory / "admin.sock"


class Colour(enum.StrEnum):
    RED = "red"


@dataclass(frozen=True)
class Sample:
    digest: bytes
    colour: Colour
    tags: frozenset[str]
    path: Path


class AgentNotFound(IgorError):
    pass


async def echo(params: dict[str, Any]) -> Any:
    return params


async def sample(params: dict[str, Any]) -> Sample:
    return Sample(b"\x00\xab", Colour.RED, frozenset({"b", "a"}), Path("/x/y"))


async def not_found(params: dict[str, Any]) -> Any:
    raise AgentNotFound(f"no agent {params.get('agent')}")


async def crash(params: dict[str, Any]) -> Any:
    raise ZeroDivisionError("boom")


async def crash_in_nursery(params: dict[str, Any]) -> Any:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(not_found, {"agent": "inner"})


async def unserialisable(params: dict[str, Any]) -> Any:
    return {"value": object()}


async def hang(params: dict[str, Any]) -> Any:
    await trio.sleep_forever()


async def short_nap(params: dict[str, Any]) -> str:
    await trio.sleep(0.3)
    return "rested"


REGISTRY = {
    "echo": echo,
    "sample": sample,
    "not_found": not_found,
    "crash": crash,
    "crash_in_nursery": crash_in_nursery,
    "unserialisable": unserialisable,
    "hang": hang,
    "short_nap": short_nap,
}


async def test_result_round_trips_with_bytes_as_hex_and_dataclasses_as_objects(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("echo", n=1, s="x", nested={"l": [1, 2]}) == {
            "n": 1,
            "s": "x",
            "nested": {"l": [1, 2]},
        }
        assert await client.call("sample") == {
            "digest": "00ab",
            "colour": "RED",
            "tags": ["a", "b"],
            "path": "/x/y",
        }


async def test_builtin_ping_and_methods_answer(nursery: trio.Nursery, socket_path: Path) -> None:
    await start_server(nursery, socket_path, {"echo": echo})
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("ping") == "pong"
        assert await client.call("methods") == ["echo", "methods", "ping"]


async def test_pipelined_requests_on_one_connection_are_answered_in_order(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    conn = await RawConnection.open(socket_path)
    lines = [
        {"id": 7, "method": "short_nap", "params": {}},
        {"id": 3, "method": "echo", "params": {"k": "v"}},
        {"id": 5, "method": "ping"},
    ]
    await conn.send(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    responses = [await conn.receive_json() for _ in lines]
    assert [r["id"] for r in responses] == [7, 3, 5]
    assert [r["result"] for r in responses] == ["rested", {"k": "v"}, "pong"]
    await conn.aclose()


async def test_igor_error_from_a_handler_is_sent_with_its_class_name(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminCallFailed) as failed:
            await client.call("not_found", agent="did:key:z6Mk1")
        assert failed.value.error_type == "AgentNotFound"
        assert failed.value.message == "no agent did:key:z6Mk1"
        with pytest.raises(AdminCallFailed) as grouped:
            await client.call("crash_in_nursery")
        assert grouped.value.error_type == "AgentNotFound"
        assert await client.call("ping") == "pong"


async def test_unexpected_exception_is_internal_error_and_server_keeps_answering(
    nursery: trio.Nursery, socket_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminCallFailed) as failed:
            await client.call("crash")
        assert failed.value.error_type == "InternalError"
        assert "ZeroDivisionError" in failed.value.message
        with pytest.raises(AdminCallFailed) as bad_result:
            await client.call("unserialisable")
        assert bad_result.value.error_type == "InternalError"
        assert await client.call("ping") == "pong"
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("ping") == "pong"


async def test_unknown_method_is_a_typed_error_and_the_connection_stays_usable(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with pytest.raises(AdminCallFailed) as failed:
            await client.call("no_such_method")
        assert failed.value.error_type == "UnknownMethod"
        assert await client.call("echo", after=True) == {"after": True}


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [
        (b"not json", None),
        (b"\xff\xfe", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"id": "1", "method": "ping"}', None),
        (b'{"id": true, "method": "ping"}', None),
        (b'{"id": 1e3, "method": "ping"}', None),
        (b'{"id": 4, "method": 12}', 4),
        (b'{"id": 4, "method": ""}', 4),
        (b'{"id": 4, "method": "echo", "params": [1]}', 4),
        (b'{"id": 4, "method": "echo", "params": {"x": NaN}}', None),
        (b"[" * 100_000, None),
    ],
)
async def test_malformed_complete_line_gets_typed_error_and_connection_stays_usable(
    nursery: trio.Nursery, socket_path: Path, line: bytes, expected_id: int | None
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    conn = await RawConnection.open(socket_path)
    await conn.send(line + b"\n")
    response = await conn.receive_json()
    assert response == {
        "id": expected_id,
        "ok": False,
        "error": {"type": "MalformedRequest", "message": response["error"]["message"]},
    }
    await conn.send(b'{"id": 9, "method": "ping"}\n')
    assert await conn.receive_json() == {"id": 9, "ok": True, "result": "pong"}
    await conn.aclose()


async def test_line_over_one_mebibyte_gets_frame_too_large_then_the_connection_closes(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    conn = await RawConnection.open(socket_path)
    filler = "x" * (DEFAULT_MAX_LINE - 60)
    at_limit = json.dumps({"id": 1, "method": "echo", "params": {"f": filler}}).encode()
    assert len(at_limit) <= DEFAULT_MAX_LINE
    await conn.send(at_limit + b"\n")
    assert (await conn.receive_json())["result"] == {"f": filler}
    with pytest.raises(trio.BrokenResourceError):  # the server stops reading and closes
        await conn.send(b"y" * (2 * DEFAULT_MAX_LINE) + b"\n")
    response = json.loads((await conn.receive_until_closed()).split(b"\n")[0])
    assert response["id"] is None
    assert response["error"]["type"] == "FrameTooLarge"
    await conn.aclose()


async def test_truncated_last_line_gets_an_answer_before_close(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, REGISTRY)
    conn = await RawConnection.open(socket_path)
    await conn.send(b'{"id": 1, "method": "ping"}\n{"id": 2, "meth')
    await conn.stream.send_eof()
    assert (await conn.receive_json())["result"] == "pong"
    rest = await conn.receive_until_closed()
    assert json.loads(rest)["error"]["type"] == "MalformedRequest"
    await conn.aclose()


async def test_socket_file_has_mode_0600(nursery: trio.Nursery, socket_path: Path) -> None:
    old_umask = os.umask(0o000)  # the mode must not depend on the caller's umask
    try:
        await start_server(nursery, socket_path)
    finally:
        os.umask(old_umask)
    st = os.lstat(socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


async def test_stale_socket_file_from_a_crashed_node_is_replaced(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    make_stale_socket(socket_path)
    with pytest.raises(AdminUnavailable):
        async with AdminClient.connect(socket_path, timeout_s=T):
            pass
    await start_server(nursery, socket_path)
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("ping") == "pong"


async def test_second_server_is_refused_while_the_first_answers(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path)
    inode = os.lstat(socket_path).st_ino
    second = AdminServer(AdminConfig(socket_path=socket_path), {})
    with pytest.raises(AdminSocketInUse):
        await second.serve()
    assert os.lstat(socket_path).st_ino == inode
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("ping") == "pong"


async def test_a_regular_file_at_the_socket_path_is_never_removed(socket_path: Path) -> None:
    socket_path.write_bytes(b"precious")
    with pytest.raises(AdminSocketError):
        await AdminServer(AdminConfig(socket_path=socket_path), {}).serve()
    assert socket_path.read_bytes() == b"precious"


async def test_too_long_socket_path_is_a_typed_error(socket_path: Path) -> None:
    long_path = socket_path.parent / ("d" * 120) / "admin.sock"
    with pytest.raises(AdminSocketError, match="longer than"):
        await AdminServer(AdminConfig(socket_path=long_path), {}).serve()


async def test_cancelling_serve_closes_the_listener_and_removes_the_socket_file(
    socket_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        await start_server(nursery, socket_path)
        conn = await RawConnection.open(socket_path)
        assert socket_path.exists()
        nursery.cancel_scope.cancel()
    assert not socket_path.exists()
    assert await conn.receive_until_closed() == b""
    await conn.aclose()


async def test_hung_handler_times_out_and_a_per_method_override_allows_longer(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(
        nursery,
        socket_path,
        REGISTRY,
        request_timeout_s=0.1,
        method_timeouts={"short_nap": 5.0},
    )
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        with trio.fail_after(T):
            with pytest.raises(AdminCallFailed) as failed:
                await client.call("hang")
        assert failed.value.error_type == "RequestTimedOut"
        assert await client.call("short_nap") == "rested"  # 0.3 s > default 0.1 s


async def test_idle_connection_is_closed_after_the_idle_timeout(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    await start_server(nursery, socket_path, idle_timeout_s=0.2)
    conn = await RawConnection.open(socket_path)
    await conn.send(b'{"id": 1, "meth')  # a line that never completes
    assert await conn.receive_until_closed() == b""
    await conn.aclose()


async def test_connections_beyond_max_clients_are_refused_with_a_typed_error(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    server = await start_server(nursery, socket_path, max_clients=2)
    async with (
        AdminClient.connect(socket_path, timeout_s=T) as first,
        AdminClient.connect(socket_path, timeout_s=T) as second,
    ):
        assert await first.call("ping") == await second.call("ping") == "pong"
        assert server.active_clients == 2
        async with AdminClient.connect(socket_path, timeout_s=T) as third:
            with pytest.raises(AdminCallFailed) as refused:
                await third.call("ping")
            assert refused.value.error_type == "TooManyClients"
    with trio.fail_after(T):
        while server.active_clients:
            await trio.sleep(0.01)  # the server notices the closes asynchronously
    async with AdminClient.connect(socket_path, timeout_s=T) as fourth:
        assert await fourth.call("ping") == "pong"


def test_registry_may_not_shadow_builtin_methods(tmp_path: Path) -> None:
    with pytest.raises(InvalidAdminRegistry):
        AdminServer(AdminConfig(socket_path=tmp_path / "a.sock"), {"ping": echo})


async def test_answer_computed_during_shutdown_is_still_delivered(
    nursery: trio.Nursery, socket_path: Path
) -> None:
    server_scope = trio.CancelScope()

    async def stop(params: dict[str, Any]) -> str:
        server_scope.cancel()  # what a node's ``stop`` does to its root, in the extreme
        return "stopping"

    async def run_server() -> None:
        with server_scope:
            async with trio.open_nursery() as inner:
                await start_server(inner, socket_path, {"stop": stop})
                ready.set()
        stopped.set()

    ready, stopped = trio.Event(), trio.Event()
    nursery.start_soon(run_server)
    await ready.wait()
    async with AdminClient.connect(socket_path, timeout_s=T) as client:
        assert await client.call("stop") == "stopping"
    with trio.fail_after(T):
        await stopped.wait()
    assert not socket_path.exists()
