"""Shared helpers of the admin-socket tests: short socket paths, a running server, raw lines."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio

from igor_p2p.net.faults import FaultGate
from igor_p2p.node.admin import AdminConfig, AdminMethod, AdminServer
from igor_p2p.node.admin_methods import register_methods

T = 5.0
"""Generous bound on anything that should happen at once."""


@contextmanager
def short_socket_dir() -> Iterator[Path]:
    """A fresh directory under /tmp: pytest's tmp_path can exceed the AF_UNIX path limit."""
    path = Path(tempfile.mkdtemp(prefix="igadm", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def start_server(
    nursery: trio.Nursery,
    socket_path: Path,
    registry: Mapping[str, AdminMethod] | None = None,
    **limits: Any,
) -> AdminServer:
    server = AdminServer(AdminConfig(socket_path=socket_path, **limits), registry or {})
    await nursery.start(server.serve)
    return server


def make_stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on, as a SIGKILLed node would."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


class RawConnection:
    """A plain connection for sending arbitrary bytes and reading raw response lines."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = b""

    @classmethod
    async def open(cls, path: Path) -> RawConnection:
        return cls(await trio.open_unix_socket(str(path)))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_json(self) -> dict[str, Any]:
        with trio.fail_after(T):
            while b"\n" not in self._buf:
                chunk = await self.stream.receive_some(1 << 16)
                assert chunk, "connection closed before a full response line"
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        value = json.loads(line)
        assert isinstance(value, dict)
        return value

    async def receive_until_closed(self) -> bytes:
        """Everything the server still sends until it closes (a reset also counts as closed)."""
        data = self._buf
        with trio.fail_after(T):
            while True:
                try:
                    chunk = await self.stream.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    return data
                if not chunk:
                    return data
                data += chunk

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class RecordingHistory:
    """A history writer that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append({"type": kind, **fields})


def stub_api_methods() -> tuple[dict[str, AdminMethod], FaultGate, RecordingHistory]:
    """Every admin method registered over a stub :class:`~igor_p2p.node.api.NodeApi` whose
    operations all succeed: what a method does with its parameters before it reaches the node
    is all that runs. Returns the methods, the real fault gate and the history."""

    async def ok(*args: Any, **kwargs: Any) -> Any:
        return {"agent": "did:key:z6Mk", "state": "ACTIVE_OWNER", "epoch": 1}

    history = RecordingHistory()
    services = SimpleNamespace(
        history=history, peer_id="12D3KooWstub", data=SimpleNamespace(history=Path("/nonexistent"))
    )
    api = SimpleNamespace(
        services=services,
        peers=SimpleNamespace(to_json=lambda now: []),
        status=ok,
        agents=ok,
        agent_status=ok,
        local_status=ok,
        launch=ok,
        halt=ok,
        resume=ok,
        migrate=ok,
        force_recover=ok,
    )
    faults = FaultGate()
    methods: dict[str, AdminMethod] = {}
    register_methods(methods, api, faults, stop=lambda: None)  # type: ignore[arg-type]
    return methods, faults, history
