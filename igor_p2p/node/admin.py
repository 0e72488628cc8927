"""The node's local admin API: JSON lines over a Unix socket at ``DATA_DIR/admin.sock``.

One request per line, ``{"id": int, "method": str, "params": {...}}``; one response per
line, ``{"id": int, "ok": true, "result": ...}`` or
``{"id": int | null, "ok": false, "error": {"type": str, "message": str}}``. Requests on one
connection are answered in order. The socket file has mode 0600: only the node's user may
talk to it. The wire format is specified in ``docs/admin-api.md``.

Hostile-input rules (the peer is local but still untrusted bytes): every line is bounded
(:attr:`AdminConfig.max_line`), every read and write has a timeout, the number of connections
is capped, and nothing a client sends or a handler raises can end :meth:`AdminServer.serve`.
A line that was complete always gets an answer and leaves the connection usable; an
over-long or truncated line gets an error response and the connection is closed.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import errno
import json
import math
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import trio

from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.logs import get_logger
from igor_p2p.net.errors import FrameTooLarge

LOG = get_logger("igor_p2p.node.admin")

AdminMethod = Callable[[dict[str, Any]], Awaitable[Any]]
"""A method handler: gets the request's ``params`` object, returns a JSON-able result."""

DEFAULT_MAX_LINE = 1 << 20
DEFAULT_MAX_CLIENTS = 32
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_IDLE_TIMEOUT_S = 300.0
DEFAULT_WRITE_TIMEOUT_S = 10.0
SOCKET_MODE = 0o600
AF_UNIX_PATH_MAX = 107
"""Longest ``sun_path`` Linux accepts, in bytes, without the terminating NUL."""
MAX_METHOD_CHARS = 128
MAX_REQUEST_ID = 2**63 - 1
MAX_RESULT_DEPTH = 64
READ_CHUNK = 1 << 16
LISTEN_BACKLOG = 64
STALE_PROBE_TIMEOUT_S = 2.0
REFUSAL_WRITE_TIMEOUT_S = 1.0
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

INTERNAL_ERROR_TYPE = "InternalError"
BUILTIN_METHODS = ("methods", "ping")


# --------------------------------------------------------------------------- errors


class AdminError(IgorError):
    """Base class of the admin API's errors (server and client side)."""


class AdminSocketError(AdminError):
    """The admin socket cannot be set up: path too long, not a socket, wrong mode, bind failed."""


class AdminSocketInUse(AdminSocketError):
    """Another live process (most likely another node on this data dir) answers on the socket."""


class InvalidAdminRegistry(AdminError):
    """The method registry is unusable (a name shadows a built-in method or is malformed)."""


class MalformedRequest(AdminError, InvalidInput):
    """A request line is not UTF-8 JSON, not an object, or has missing or wrong-typed fields.

    ``request_id`` is the request's ``id`` when it could be read, so the response can carry it.
    """

    def __init__(self, message: str, *, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class TruncatedLine(AdminError, InvalidInput):
    """The stream ended in the middle of a line."""


class UnknownMethod(AdminError, InvalidInput):
    """The request names a method that is not registered."""


class TooManyClients(AdminError):
    """The server already serves ``max_clients`` connections; this one is refused."""


class RequestTimedOut(AdminError):
    """The handler did not finish within its timeout; it was cancelled."""


class InternalError(AdminError):
    """A handler failed with an unexpected (non-Igor) exception or an unserialisable result."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AdminConfig:
    """Where the admin socket lives and the limits it enforces."""

    socket_path: Path
    max_line: int = DEFAULT_MAX_LINE
    """Longest request line in bytes, not counting the newline."""
    max_clients: int = DEFAULT_MAX_CLIENTS
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    """Default handler timeout; see :attr:`method_timeouts`."""
    method_timeouts: Mapping[str, float] = field(default_factory=dict)
    """Per-method handler timeouts overriding :attr:`request_timeout_s` (e.g. ``migrate``)."""
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    """A connection is closed when no complete line arrives within this time."""
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    """A connection is closed when a response cannot be written within this time."""

    def timeout_for(self, method: str) -> float:
        return self.method_timeouts.get(method, self.request_timeout_s)


# --------------------------------------------------------------------------- wire format


@dataclass(frozen=True)
class AdminRequest:
    """One decoded request line."""

    id: int
    method: str
    params: dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _valid_id(value: Any) -> bool:
    return type(value) is int and -MAX_REQUEST_ID <= value <= MAX_REQUEST_ID


def parse_request(line: bytes) -> AdminRequest:
    """Decode one request line (without its newline); raise :class:`MalformedRequest`."""
    try:
        text = line.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedRequest(f"not a JSON line: {type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise MalformedRequest(f"a request must be a JSON object, not {type(value).__name__}")
    request_id = value.get("id")
    if not _valid_id(request_id):
        raise MalformedRequest('"id" must be an integer within ±(2**63 - 1)')
    method = value.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_CHARS:
        raise MalformedRequest(
            f'"method" must be a string of 1..{MAX_METHOD_CHARS} characters',
            request_id=request_id,
        )
    params = value.get("params", {})
    if not isinstance(params, dict):
        raise MalformedRequest('"params" must be a JSON object', request_id=request_id)
    return AdminRequest(id=request_id, method=method, params=params)


def _jsonable_key(key: Any) -> str:
    if isinstance(key, enum.Enum):
        return key.name
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).hex()
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"a map key of type {type(key).__name__} cannot be serialised")


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Turn a handler's result into JSON-able data.

    Bytes become lowercase hex strings, enums their member name, dataclasses an object of
    their fields, tuples and lists arrays, sets sorted arrays, paths strings, datetimes ISO
    8601 strings. Anything else (and non-finite floats) raises :class:`TypeError`.
    """
    if _depth > MAX_RESULT_DEPTH:
        raise TypeError("result nested too deeply")
    depth = _depth + 1
    if isinstance(value, enum.Enum):
        return value.name
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"non-finite float {value!r} cannot be serialised")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), depth) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {_jsonable_key(k): to_jsonable(v, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item, depth) for item in value]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(item, depth) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"a value of type {type(value).__name__} cannot be serialised")


def encode_line(message: Mapping[str, Any]) -> bytes:
    """One JSON object as one ASCII line (values must already be JSON-able)."""
    text = json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return text.encode("ascii") + b"\n"


def success_line(request_id: int, result: Any) -> bytes:
    return encode_line({"id": request_id, "ok": True, "result": to_jsonable(result)})


def error_line(request_id: int | None, error_type: str, message: str) -> bytes:
    error = {"type": error_type, "message": message}
    return encode_line({"id": request_id, "ok": False, "error": error})


class LineReader:
    """Reads ``\\n``-terminated lines of at most ``max_line`` bytes from a trio stream.

    :meth:`receive_line` returns a line without its newline, ``None`` at EOF between lines,
    and raises :class:`FrameTooLarge` (line over the limit) or :class:`TruncatedLine` (EOF
    inside a line). After either error the stream is out of step and must be closed.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int) -> None:
        self._stream = stream
        self._max_line = max_line
        self._buf = bytearray()
        self._start = 0
        self._scanned = 0

    async def receive_line(self) -> bytes | None:
        while True:
            newline = self._buf.find(b"\n", max(self._start, self._scanned))
            if newline >= 0:
                if newline - self._start > self._max_line:
                    raise FrameTooLarge(f"line exceeds the limit of {self._max_line} bytes")
                line = bytes(self._buf[self._start : newline])
                self._start = newline + 1
                self._compact()
                return line
            self._scanned = len(self._buf)
            if len(self._buf) - self._start > self._max_line:
                raise FrameTooLarge(f"line exceeds the limit of {self._max_line} bytes")
            chunk = await self._stream.receive_some(READ_CHUNK)
            if not chunk:
                pending = len(self._buf) - self._start
                if pending:
                    raise TruncatedLine(f"stream ended {pending} bytes into a line")
                return None
            self._buf += chunk

    def _compact(self) -> None:
        if self._start == len(self._buf):
            self._buf.clear()
            self._start = self._scanned = 0
        elif self._start > READ_CHUNK:
            del self._buf[: self._start]
            self._scanned = max(0, self._scanned - self._start)
            self._start = 0


# --------------------------------------------------------------------------- server


def _unwrap_single(exc: BaseException) -> BaseException:
    """A handler's nursery wraps one failure in a group; report the failure itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


_STREAM_GONE: tuple[type[BaseException], ...] = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


class AdminServer:
    """Serves a method registry on the admin socket; run :meth:`serve` in the node's nursery."""

    def __init__(self, config: AdminConfig, registry: Mapping[str, AdminMethod]) -> None:
        for name in registry:
            if name in BUILTIN_METHODS:
                raise InvalidAdminRegistry(f"method {name!r} shadows a built-in method")
            if not isinstance(name, str) or not 0 < len(name) <= MAX_METHOD_CHARS:
                raise InvalidAdminRegistry(f"method name {name!r} is not a short string")
        self.config = config
        builtins: dict[str, AdminMethod] = {"ping": self._ping, "methods": self._methods}
        self._methods_by_name: dict[str, AdminMethod] = {**builtins, **registry}
        self._active_clients = 0

    @property
    def active_clients(self) -> int:
        return self._active_clients

    async def _ping(self, params: dict[str, Any]) -> str:
        return "pong"

    async def _methods(self, params: dict[str, Any]) -> list[str]:
        return sorted(self._methods_by_name)

    # ------------------------------------------------------------------ socket lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the socket until cancelled; then close it and unlink the socket file.

        ``task_status.started()`` is called once the socket accepts connections.
        Raises :class:`AdminSocketInUse` if another live process answers on the path and
        :class:`AdminSocketError` if the socket cannot be set up.
        """
        path = self.config.socket_path
        sock, identity = await self._bind(path)
        try:
            listener = trio.SocketListener(sock)
            LOG.info("admin socket listening", path=str(path))
            async with trio.open_nursery() as nursery:
                task_status.started()
                await self._accept_loop(listener, nursery)
        finally:
            sock.close()
            _unlink_if_ours(path, identity)
            LOG.info("admin socket closed", path=str(path))

    async def _bind(self, path: Path) -> tuple[trio.socket.SocketType, tuple[int, int]]:
        if len(os.fsencode(path)) > AF_UNIX_PATH_MAX:
            raise AdminSocketError(
                f"socket path {str(path)!r} is longer than {AF_UNIX_PATH_MAX} bytes; "
                "use a shorter data dir"
            )
        await _remove_stale_socket(path)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        identity: tuple[int, int] | None = None
        try:
            try:
                await sock.bind(os.fspath(path))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AdminSocketInUse(f"{path} was bound by another process") from exc
                raise AdminSocketError(f"cannot bind {path}: {exc.strerror}") from exc
            # Nobody can connect before listen(), so the mode is right before anyone can use it.
            try:
                os.chmod(path, SOCKET_MODE)
                st = os.lstat(path)
            except OSError as exc:
                raise AdminSocketError(f"cannot set the mode of {path}: {exc.strerror}") from exc
            identity = (st.st_dev, st.st_ino)
            if not stat.S_ISSOCK(st.st_mode) or stat.S_IMODE(st.st_mode) != SOCKET_MODE:
                raise AdminSocketError(
                    f"{path} has mode {stat.S_IMODE(st.st_mode):o} after chmod; expected 600"
                )
            sock.listen(LISTEN_BACKLOG)
        except BaseException:
            sock.close()
            if identity is not None:
                _unlink_if_ours(path, identity)
            raise
        return sock, identity

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    LOG.warning("admin accept failed; retrying", error=os.strerror(exc.errno))
                    await trio.sleep(0.1)
                    continue
                raise AdminSocketError(f"accept failed: {exc}") from exc
            nursery.start_soon(self._handle_connection, stream)

    # ------------------------------------------------------------------ connections

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        try:
            if self._active_clients >= self.config.max_clients:
                await self._send_quietly(
                    stream,
                    error_line(
                        None,
                        TooManyClients.__name__,
                        f"the admin socket serves at most {self.config.max_clients} clients",
                    ),
                    REFUSAL_WRITE_TIMEOUT_S,
                )
                return
            self._active_clients += 1
            try:
                await self._serve_connection(stream)
            finally:
                self._active_clients -= 1
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        reader = LineReader(stream, self.config.max_line)
        while True:
            try:
                with trio.fail_after(self.config.idle_timeout_s):
                    line = await reader.receive_line()
            except trio.TooSlowError:
                LOG.debug("admin connection idle; closing")
                return
            except FrameTooLarge as exc:
                await self._send_quietly(stream, error_line(None, type(exc).__name__, str(exc)))
                return
            except TruncatedLine as exc:
                reply = error_line(None, MalformedRequest.__name__, str(exc))
                await self._send_quietly(stream, reply)
                return
            except _STREAM_GONE:
                return
            if line is None:
                return
            if not await self._send_quietly(stream, await self.respond(line)):
                return

    async def _send_quietly(
        self, stream: trio.SocketStream, data: bytes, timeout_s: float | None = None
    ) -> bool:
        """Write ``data``; ``False`` if the client is gone or too slow to read it.

        The write is shielded (but still bounded by the write timeout) so that an answer that
        was computed is delivered even when the node starts shutting down meanwhile, e.g. the
        answer to ``stop``.
        """
        try:
            with (
                trio.CancelScope(shield=True),
                trio.fail_after(timeout_s or self.config.write_timeout_s),
            ):
                await stream.send_all(data)
        except (trio.TooSlowError, *_STREAM_GONE):
            return False
        return True

    # ------------------------------------------------------------------ requests

    async def respond(self, line: bytes) -> bytes:
        """The response line for one request line. Never raises (except cancellation)."""
        try:
            request = parse_request(line)
        except MalformedRequest as exc:
            return error_line(exc.request_id, type(exc).__name__, str(exc))
        handler = self._methods_by_name.get(request.method)
        if handler is None:
            exc = UnknownMethod(f"unknown method {request.method!r}; see the 'methods' method")
            return error_line(request.id, type(exc).__name__, str(exc))
        timeout_s = self.config.timeout_for(request.method)
        try:
            with trio.move_on_after(timeout_s) as scope:
                result = await handler(request.params)
            if scope.cancelled_caught:
                raise RequestTimedOut(f"{request.method} did not finish within {timeout_s} s")
            return success_line(request.id, result)
        except Exception as raised:
            exc = _unwrap_single(raised)
            if isinstance(exc, IgorError):
                LOG.info(
                    "admin method failed",
                    method=request.method,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                return error_line(request.id, type(exc).__name__, str(exc))
            LOG.error("admin method crashed", method=request.method, exc_info=raised)
            message = f"{request.method} failed: {type(exc).__name__}: {exc}"
            return error_line(request.id, INTERNAL_ERROR_TYPE, message)


async def _remove_stale_socket(path: Path) -> None:
    """Unlink a socket file left by a crashed node; refuse if something answers on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AdminSocketError(f"cannot inspect {path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise AdminSocketError(f"{path} exists and is not a socket; refusing to remove it")
    if await _something_answers(path):
        raise AdminSocketInUse(
            f"another process (probably a running node) answers on {path}; "
            "stop it first or use another data dir"
        )
    LOG.warning("removing stale admin socket", path=str(path))
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise AdminSocketError(f"cannot remove stale socket {path}: {exc.strerror}") from exc


async def _something_answers(path: Path) -> bool:
    """Whether a process listens on the socket at ``path`` (a hanging connect counts as yes)."""
    probe = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        with trio.move_on_after(STALE_PROBE_TIMEOUT_S):
            await probe.connect(os.fspath(path))
        return True  # connected, or stuck in a full backlog: a live process owns it
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        raise AdminSocketError(f"cannot probe {path}: {exc.strerror}") from exc
    finally:
        probe.close()


def _unlink_if_ours(path: Path, identity: tuple[int, int]) -> None:
    """Remove the socket file only if it is still the one this server bound."""
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass
