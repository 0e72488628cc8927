"""Length-prefixed frames (4-byte big-endian length + payload) and msgpack messages on top.

G4: py-libp2p reports a remote ``reset()`` as a clean EOF to the reader. A reader therefore
can never take EOF as success: every protocol built on these frames ends with an explicit
ack frame, and "the peer closed" is only ever :class:`ConnectionClosedCleanly` *between* frames
(which may still be a reset). EOF or reset inside a frame is :class:`TruncatedFrame`.

After :class:`FrameTooLarge`, :class:`TruncatedFrame`, :class:`FrameTimeout` or
:class:`MalformedMessage` the stream is out of step; the caller must reset it.

Message faults (tests only): ``write_frame``/``write_message`` take an optional ``gate`` (the
node's ``FaultGate``); without one, or while it has no message faults, the path is unchanged.

The functions work on any object with libp2p's stream methods (``read(n)``, ``write(data)``);
:class:`TrioStreamAdapter` gives a ``trio.abc.Stream`` (e.g. a memory stream) that shape.
"""

import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack
import trio
from libp2p.io.exceptions import IOException

from igor_p2p.net.errors import (
    ConnectionClosedCleanly,
    FrameTimeout,
    FrameTooLarge,
    MalformedMessage,
    StreamBroken,
    TruncatedFrame,
)

HEADER = struct.Struct(">I")
MAX_FRAME_SIZE_LIMIT = 0xFFFF_FFFF
READ_CHUNK = 1 << 16
MAX_MESSAGE_DEPTH = 32

# Errors a stream can raise when the peer goes away (libp2p StreamEOF/Reset/Closed/Error are
# IOException subclasses; trio streams raise Broken/ClosedResourceError; sockets raise OSError).
_STREAM_FAILURES: tuple[type[BaseException], ...] = (
    IOException,
    EOFError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ConnectionError,
    OSError,
)


class ByteStream(Protocol):
    """The part of ``libp2p.abc.INetStream`` the framing uses."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


class OutboundFaults(Protocol):
    """What :func:`write_frame` needs of a fault gate (``igor_p2p.net.faults.FaultGate``)."""

    @property
    def has_message_faults(self) -> bool: ...

    def message_faults_apply_to(self, peer_id: str) -> bool: ...

    async def apply_outbound(
        self,
        peer_id: str,
        protocol: str,
        send: Callable[[bytes], Awaitable[None]],
        frame: bytes,
        *,
        stream_key: object | None = None,
    ) -> None: ...


class TrioStreamAdapter:
    """Gives a ``trio.abc.Stream`` libp2p's stream methods (read, write, close, reset).

    EOF reads as ``b""``, which the framing treats like libp2p's ``StreamEOF``.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return await self.stream.receive_some(n or READ_CHUNK)

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        await self.stream.aclose()

    async def reset(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _is_eof(exc: BaseException) -> bool:
    return isinstance(exc, EOFError)  # libp2p StreamEOF is an EOFError; reset also reads as it


async def _read_exact(stream: ByteStream, n: int, *, frame_started: bool) -> bytes:
    """Read exactly ``n`` bytes. ``frame_started``: bytes of this frame were already read."""
    buf = bytearray()
    while len(buf) < n:
        try:
            # Ask for everything still missing (n is already capped by the frame limit): fewer
            # reads and copies than fixed-size chunks.
            chunk = await stream.read(n - len(buf))
        except _STREAM_FAILURES as exc:
            started = frame_started or bool(buf)
            if started:
                raise TruncatedFrame(f"stream ended {len(buf)}/{n} bytes into a frame") from exc
            if _is_eof(exc):
                raise ConnectionClosedCleanly("EOF at a frame boundary") from exc
            raise StreamBroken(f"stream failed at a frame boundary: {type(exc).__name__}") from exc
        if not chunk:
            if frame_started or buf:
                raise TruncatedFrame(f"EOF {len(buf)}/{n} bytes into a frame")
            raise ConnectionClosedCleanly("EOF at a frame boundary")
        if not buf and len(chunk) == n:
            return bytes(chunk)  # the common case: one read, no copy
        buf += chunk
    return bytes(buf)


async def read_frame(stream: ByteStream, *, max_size: int, timeout_s: float) -> bytes:
    """Read one frame; its whole reception must fit in ``timeout_s``."""
    try:
        with trio.fail_after(timeout_s):
            header = await _read_exact(stream, HEADER.size, frame_started=False)
            (length,) = HEADER.unpack(header)
            if length > max_size:
                raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_size}")
            if length == 0:
                return b""
            return await _read_exact(stream, length, frame_started=True)
    except trio.TooSlowError as exc:
        raise FrameTimeout(f"no complete frame within {timeout_s} s") from exc


async def _write_bytes(stream: ByteStream, data: bytes, timeout_s: float) -> None:
    try:
        with trio.fail_after(timeout_s):
            await stream.write(data)
    except trio.TooSlowError as exc:
        raise FrameTimeout(f"frame not written within {timeout_s} s") from exc
    except _STREAM_FAILURES as exc:
        raise StreamBroken(f"write failed: {type(exc).__name__}") from exc


def _stream_peer(stream: ByteStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id)  # type: ignore[attr-defined]
    except Exception:
        return "<unknown>"


def _stream_protocol(stream: ByteStream) -> str:
    try:
        return str(stream.get_protocol())  # type: ignore[attr-defined]
    except Exception:
        return "<unknown>"


async def write_frame(
    stream: ByteStream,
    payload: bytes,
    *,
    timeout_s: float,
    gate: OutboundFaults | None = None,
    peer: str | None = None,
    protocol: str | None = None,
) -> None:
    """Write one frame (header and payload in one write).

    With a ``gate`` (a :class:`~igor_p2p.net.faults.FaultGate`) whose message faults apply to
    the remote peer (``peer``, else the stream's remote peer), the frame goes through
    ``gate.apply_outbound`` and may be dropped, duplicated, delayed or reordered. A delay is
    spent before the write and does not count against ``timeout_s``.
    """
    if len(payload) > MAX_FRAME_SIZE_LIMIT:
        raise FrameTooLarge(f"payload of {len(payload)} bytes does not fit a 4-byte length")
    data = HEADER.pack(len(payload)) + bytes(payload)
    if gate is not None and gate.has_message_faults:
        remote = peer if peer is not None else _stream_peer(stream)
        if gate.message_faults_apply_to(remote):

            async def send(frame: bytes) -> None:
                await _write_bytes(stream, frame, timeout_s)

            await gate.apply_outbound(
                remote,
                protocol if protocol is not None else _stream_protocol(stream),
                send,
                data,
                stream_key=stream,
            )
            return
    await _write_bytes(stream, data, timeout_s)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _reject_ext(code: int, data: bytes) -> Any:
    raise MalformedMessage(f"msgpack extension type {code} is not allowed")


def _check_value(value: Any, depth: int) -> None:
    if depth > MAX_MESSAGE_DEPTH:
        raise MalformedMessage("message nested too deeply")
    if value is None or isinstance(value, bool | str | bytes):
        return
    if isinstance(value, int):  # msgpack carries up to 2**64 - 1; nothing of ours exceeds int64
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise MalformedMessage("integer outside the signed 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedMessage("non-finite number")
        return
    if isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedMessage("map keys must be strings")
            _check_value(item, depth + 1)
        return
    raise MalformedMessage(f"value of type {type(value).__name__} is not allowed")


def decode_message(payload: bytes) -> dict[str, Any]:
    """Decode and check one msgpack message: a map with str keys and a str ``type``."""
    try:
        message = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
            timestamp=0,
        )
    except MalformedMessage:
        raise
    except Exception as exc:  # ExtraData, FormatError, StackError, ValueError, Unicode..., ...
        raise MalformedMessage(f"not a msgpack message: {type(exc).__name__}") from exc
    if not isinstance(message, dict):
        raise MalformedMessage("a message must be a msgpack map")
    if not isinstance(message.get("type"), str):
        raise MalformedMessage('a message must have a str "type"')
    _check_value(message, 0)
    return message


def encode_message(message: dict[str, Any]) -> bytes:
    """Encode a message (a dict with a str ``type``) as msgpack."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise MalformedMessage('a message must be a dict with a str "type"')
    _check_value(message, 0)
    return msgpack.packb(message, use_bin_type=True)


async def read_message(stream: ByteStream, *, max_size: int, timeout_s: float) -> dict[str, Any]:
    """Read one frame and decode it as a message."""
    return decode_message(await read_frame(stream, max_size=max_size, timeout_s=timeout_s))


async def write_message(
    stream: ByteStream,
    message: dict[str, Any],
    *,
    timeout_s: float,
    max_size: int | None = None,
    gate: OutboundFaults | None = None,
    peer: str | None = None,
    protocol: str | None = None,
) -> None:
    """Encode ``message`` and write it as one frame; refuse it if larger than ``max_size``.

    ``gate``/``peer``/``protocol``: message-fault injection, see :func:`write_frame`.
    """
    payload = encode_message(message)
    if max_size is not None and len(payload) > max_size:
        raise FrameTooLarge(f"message of {len(payload)} bytes exceeds the limit of {max_size}")
    await write_frame(stream, payload, timeout_s=timeout_s, gate=gate, peer=peer, protocol=protocol)
