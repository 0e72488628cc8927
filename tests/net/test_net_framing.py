"""Frames and msgpack messages: typed errors for every way a peer can misbehave (incl. G4)."""

import struct

import hypothesis.strategies as st
import msgpack
import pytest
import trio
import trio.testing
from conftest import HostSpawner
from hypothesis import given, settings
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF

from igor_p2p.net.errors import (
    ConnectionClosedCleanly,
    FrameError,
    FrameTimeout,
    FrameTooLarge,
    MalformedMessage,
    StreamBroken,
    TruncatedFrame,
)
from igor_p2p.net.framing import (
    TrioStreamAdapter,
    decode_message,
    read_frame,
    read_message,
    write_frame,
    write_message,
)
from igor_p2p.net.host import dial, full_addrs

T = 2.0


def _nested(depth: int) -> list:  # type: ignore[type-arg]
    value: list = [1]  # type: ignore[type-arg]
    for _ in range(depth):
        value = [value]
    return value


PROTO = TProtocol("/igor-test/frames/1")


def _pair() -> tuple[TrioStreamAdapter, TrioStreamAdapter]:
    a, b = trio.testing.memory_stream_pair()
    return TrioStreamAdapter(a), TrioStreamAdapter(b)


async def test_frames_and_messages_round_trip_over_a_memory_stream() -> None:
    a, b = _pair()
    await write_frame(a, b"hello", timeout_s=T)
    await write_frame(a, b"", timeout_s=T)
    await write_message(a, {"type": "ack", "n": 1, "blob": b"\x00" * 70_000}, timeout_s=T)
    assert await read_frame(b, max_size=10, timeout_s=T) == b"hello"
    assert await read_frame(b, max_size=10, timeout_s=T) == b""
    msg = await read_message(b, max_size=100_000, timeout_s=T)
    assert msg == {"type": "ack", "n": 1, "blob": b"\x00" * 70_000}


async def test_eof_at_a_frame_boundary_is_a_clean_close() -> None:
    a, b = _pair()
    await write_frame(a, b"one", timeout_s=T)
    await a.close()
    assert await read_frame(b, max_size=10, timeout_s=T) == b"one"
    with pytest.raises(ConnectionClosedCleanly):
        await read_frame(b, max_size=10, timeout_s=T)


@pytest.mark.parametrize("sent", [b"\x00\x00", struct.pack(">I", 5) + b"abc"])
async def test_eof_inside_a_frame_is_truncated(sent: bytes) -> None:
    a, b = _pair()
    await a.write(sent)
    await a.close()
    with pytest.raises(TruncatedFrame):
        await read_frame(b, max_size=10, timeout_s=T)


async def test_oversized_frame_is_refused_before_its_payload_is_read() -> None:
    a, b = _pair()
    await a.write(struct.pack(">I", 11))  # no payload follows: we must not wait for it
    with pytest.raises(FrameTooLarge):
        await read_frame(b, max_size=10, timeout_s=T)
    with pytest.raises(FrameTooLarge):
        await write_message(a, {"type": "x", "pad": "y" * 20}, timeout_s=T, max_size=10)


async def test_slow_frame_times_out() -> None:
    a, b = _pair()
    await a.write(struct.pack(">I", 5) + b"ab")
    with pytest.raises(FrameTimeout):
        await read_frame(b, max_size=10, timeout_s=0.05)


async def test_write_to_a_closed_peer_is_stream_broken() -> None:
    a, b = _pair()
    await b.reset()
    with pytest.raises(StreamBroken):
        await write_frame(a, b"x" * 10, timeout_s=T)


@pytest.mark.parametrize(
    "payload",
    [
        msgpack.packb([1, 2]),
        msgpack.packb({"kind": "x"}),
        msgpack.packb({"type": 3}),
        msgpack.packb({"type": "x", 1: 2}),
        msgpack.packb({"type": "x", "t": msgpack.ExtType(5, b"")}),
        msgpack.packb({"type": "x"}) + b"\x00",  # trailing bytes
        b"\xc1",  # never used
        b"\x91" * 5000 + b"\xc0",  # deeply nested arrays
        msgpack.packb({"type": "x", "d": _nested(40)}),
        b"\xa3\xff\xfe\xfd",  # invalid utf-8 str
    ],
)
def test_malformed_messages_are_rejected(payload: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(payload)


class _ChunkedBytes:
    """A stream that returns ``data`` in the given chunk sizes, then EOF forever."""

    def __init__(self, data: bytes, chunks: list[int]) -> None:
        self.data = data
        self.chunks = chunks

    async def read(self, n: int | None = None) -> bytes:
        if not self.data:
            raise StreamEOF("eof")
        size = max(1, min(n or 1 << 16, self.chunks.pop(0) if self.chunks else 1 << 16))
        out, self.data = self.data[:size], self.data[size:]
        return out

    async def write(self, data: bytes) -> None:
        raise AssertionError("not used")


def _read_all(data: bytes, chunks: list[int], max_size: int) -> list[dict]:  # type: ignore[type-arg]
    async def main() -> list[dict]:  # type: ignore[type-arg]
        stream = _ChunkedBytes(data, chunks)
        out = []
        while True:
            try:
                out.append(await read_message(stream, max_size=max_size, timeout_s=T))
            except ConnectionClosedCleanly:
                return out
            except FrameError:
                return out

    return trio.run(main)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=10,
)


@given(
    data=st.binary(max_size=300)
    | st.builds(
        lambda body, cut: (struct.pack(">I", len(body)) + body)[:cut],
        st.binary(max_size=200),
        st.integers(0, 210),
    ),
    chunks=st.lists(st.integers(1, 50), max_size=20),
    max_size=st.integers(0, 400),
)
@settings(max_examples=300, deadline=None)
def test_garbage_truncated_or_oversized_input_gives_only_typed_errors(
    data: bytes, chunks: list[int], max_size: int
) -> None:
    for message in _read_all(data, chunks, max_size):
        assert isinstance(message["type"], str)


@given(body=st.dictionaries(st.text(max_size=5), _values, max_size=5), kind=st.text(max_size=10))
@settings(max_examples=150, deadline=None)
def test_valid_messages_survive_any_chunking(body: dict, kind: str) -> None:  # type: ignore[type-arg]
    message = {**body, "type": kind}
    packed = msgpack.packb(message, use_bin_type=True)
    data = struct.pack(">I", len(packed)) + packed
    assert _read_all(data * 2, [3, 1, 7], max_size=len(packed)) == [message, message]


async def test_frames_over_real_libp2p_streams_and_reset_reads_as_eof(
    spawn_hosts: HostSpawner,
) -> None:
    """G4 on a real Yamux stream: a reset mid-frame is TruncatedFrame, at a boundary it looks
    exactly like a clean close, so a protocol can only trust an explicit ack."""
    server, client = await spawn_hosts(2)
    outcomes: trio.MemorySendChannel[object]
    outcomes, results = trio.open_memory_channel[object](10)

    async def handler(stream) -> None:  # type: ignore[no-untyped-def]
        try:
            message = await read_message(stream, max_size=1 << 20, timeout_s=T)
            await outcomes.send(message)
            await write_message(stream, {"type": "ack"}, timeout_s=T)
            await read_frame(stream, max_size=1 << 20, timeout_s=T)
        except FrameError as exc:
            await outcomes.send(type(exc))
        await stream.reset()

    server.set_stream_handler(PROTO, handler)
    await dial(client, full_addrs(server)[0], timeout_s=3)

    s = await client.new_stream(server.get_id(), [PROTO])
    await write_message(s, {"type": "hello", "blob": b"z" * 300_000}, timeout_s=T)
    assert await read_message(s, max_size=100, timeout_s=T) == {"type": "ack"}
    await s.write(struct.pack(">I", 100) + b"half")
    await trio.testing.wait_all_tasks_blocked()
    await s.reset()
    with trio.fail_after(3):
        assert (await results.receive())["blob"] == b"z" * 300_000  # type: ignore[index]
        assert await results.receive() is TruncatedFrame

    s = await client.new_stream(server.get_id(), [PROTO])
    await write_message(s, {"type": "hello"}, timeout_s=T)
    assert await read_message(s, max_size=100, timeout_s=T) == {"type": "ack"}
    await s.reset()  # a reset, yet the reader sees a clean close (G4)
    with trio.fail_after(3):
        assert await results.receive() == {"type": "hello"}
        assert await results.receive() is ConnectionClosedCleanly
