"""Client of the node's admin socket (see :mod:`igor_p2p.node.admin` and docs/admin-api.md).

Async: ``async with AdminClient.connect(path) as c: await c.call("status")``.
Sync (CLI, testnet harness, any thread that is not running trio): :func:`call_admin`.

Every failure is typed: :class:`AdminUnavailable` (no node listens), :class:`AdminCallFailed`
(the node answered with an error; ``error_type`` names the node-side exception class),
:class:`AdminTimeout`, :class:`AdminConnectionLost` (closed without an answer) and
:class:`AdminProtocolError` (the answer is not a valid response line).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from igor_p2p.errors import InvalidInput
from igor_p2p.net.errors import FrameTooLarge
from igor_p2p.node.admin import (
    AdminError,
    LineReader,
    TruncatedLine,
    encode_line,
    to_jsonable,
)

DEFAULT_CLIENT_TIMEOUT_S = 35.0
"""A little longer than the server's default handler timeout, so its typed timeout arrives."""
DEFAULT_MAX_RESPONSE_LINE = 64 * 1024 * 1024
READ_AFTER_SEND_FAILURE_S = 1.0
"""How long to wait for the node's error line after it closed while we were still sending."""


class AdminUnavailable(AdminError):
    """No node answers on the admin socket (missing, refused, not accessible)."""


class AdminCallFailed(AdminError):
    """The node answered with an error response.

    ``error_type`` is the node-side exception class name (``UnknownMethod``,
    ``MalformedRequest``, ``FrameTooLarge``, ``RequestTimedOut``, ``InternalError``, or any
    ``IgorError`` subclass a method raised); ``message`` its message.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class AdminTimeout(AdminError):
    """Connecting or waiting for the answer took longer than the client's timeout."""


class AdminConnectionLost(AdminError):
    """The connection ended (or was abandoned after a failure) before an answer arrived."""


class AdminProtocolError(AdminError, InvalidInput):
    """The node's answer is not a valid response line, or answers another request."""


def _unavailable(path: Path, reason: str) -> AdminUnavailable:
    return AdminUnavailable(
        f"no node answers on {path} ({reason}); is the node running? "
        f"(igor node run --data-dir {path.parent})"
    )


def _parse_response(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AdminProtocolError(f"response is not a JSON line: {type(exc).__name__}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
        raise AdminProtocolError('response must be an object with a boolean "ok"')
    response_id = value.get("id")
    if response_id is not None and type(response_id) is not int:
        raise AdminProtocolError('response "id" must be an integer or null')
    if value["ok"]:
        if "result" not in value:
            raise AdminProtocolError('success response without "result"')
        return value
    error = value.get("error")
    if (
        not isinstance(error, dict)
        or not isinstance(error.get("type"), str)
        or not isinstance(error.get("message"), str)
    ):
        raise AdminProtocolError('error response needs "error": {"type": str, "message": str}')
    return value


class AdminClient:
    """One connection to a node's admin socket. Calls on it are serialised."""

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        socket_path: Path,
        timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
        max_response_line: int = DEFAULT_MAX_RESPONSE_LINE,
    ) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._stream = stream
        self._reader = LineReader(stream, max_response_line)
        self._ids = itertools.count(1)
        self._lock = trio.Lock()
        self._broken: str | None = None

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        socket_path: Path | str,
        *,
        timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
        max_response_line: int = DEFAULT_MAX_RESPONSE_LINE,
    ) -> AsyncIterator[AdminClient]:
        """Connect to the admin socket; ``timeout_s`` bounds the connect and each call."""
        path = Path(socket_path)
        try:
            with trio.fail_after(timeout_s):
                stream = await trio.open_unix_socket(os.fspath(path))
        except FileNotFoundError as exc:
            raise _unavailable(path, "no socket file") from exc
        except ConnectionRefusedError as exc:
            raise _unavailable(path, "connection refused: stale socket file") from exc
        except PermissionError as exc:
            raise AdminUnavailable(
                f"permission denied on {path}; the admin socket belongs to the node's user"
            ) from exc
        except trio.TooSlowError as exc:
            raise AdminTimeout(f"connecting to {path} took longer than {timeout_s} s") from exc
        except OSError as exc:
            raise _unavailable(path, exc.strerror or type(exc).__name__) from exc
        client = cls(
            stream, socket_path=path, timeout_s=timeout_s, max_response_line=max_response_line
        )
        try:
            yield client
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        self._broken = self._broken or "the client was closed"
        await trio.aclose_forcefully(self._stream)

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call ``method`` with keyword ``params`` and return its result."""
        return await self.request(method, params)

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """Call ``method``; ``timeout_s`` overrides the client's timeout for this call.

        Bytes in ``params`` are sent as hex, like the node sends bytes in results.
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            if self._broken is not None:
                raise AdminConnectionLost(f"connection unusable: {self._broken}")
            request_id = next(self._ids)
            line = encode_line(
                {"id": request_id, "method": method, "params": to_jsonable(dict(params or {}))}
            )
            try:
                response = await self._exchange(line, timeout)
            except AdminError as exc:
                self._broken = f"{type(exc).__name__}: {exc}"
                await trio.aclose_forcefully(self._stream)
                raise
        if response["id"] is None:
            # The node answered a request it could not attribute (over-long line, too many
            # clients) and closes the connection.
            self._broken = "the node closed the connection after an unattributed error"
        elif response["id"] != request_id:
            self._broken = "response id mismatch"
            raise AdminProtocolError(f"response id {response['id']} answers another request")
        if response["ok"]:
            return response["result"]
        error = response["error"]
        raise AdminCallFailed(error["type"], error["message"])

    async def _exchange(self, line: bytes, timeout_s: float) -> dict[str, Any]:
        try:
            with trio.fail_after(timeout_s):
                send_failure: BaseException | None = None
                try:
                    await self._stream.send_all(line)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    # The node may have closed after answering with an error (e.g. the line was
                    # too long); its answer can still be waiting in our receive buffer.
                    send_failure = exc
                with trio.move_on_after(
                    READ_AFTER_SEND_FAILURE_S if send_failure else float("inf")
                ):
                    return _parse_response(await self._receive_line())
                raise AdminConnectionLost("the node closed the connection while we were sending")
        except trio.TooSlowError as exc:
            raise AdminTimeout(f"no answer from {self.socket_path} within {timeout_s} s") from exc

    async def _receive_line(self) -> bytes:
        try:
            line = await self._reader.receive_line()
        except FrameTooLarge as exc:
            raise AdminProtocolError(f"response too large: {exc}") from exc
        except TruncatedLine as exc:
            raise AdminConnectionLost(f"the node closed mid-answer: {exc}") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise AdminConnectionLost(f"connection failed: {type(exc).__name__}") from exc
        if line is None:
            raise AdminConnectionLost("the node closed the connection without answering")
        return line


def call_admin(
    socket_path: Path | str,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
) -> Any:
    """Connect, call one method, disconnect; blocking. ``timeout_s`` bounds the whole call.

    Runs its own trio loop, so it works from the main thread or any other thread that is not
    already running trio (inside trio, use :class:`AdminClient`).
    """

    async def one_call() -> Any:
        try:
            with trio.fail_after(timeout_s):
                async with AdminClient.connect(socket_path, timeout_s=timeout_s) as client:
                    return await client.request(method, params)
        except trio.TooSlowError as exc:
            raise AdminTimeout(f"{method} on {socket_path} took longer than {timeout_s} s") from exc

    return trio.run(one_call)
