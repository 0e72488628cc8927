"""The authority protocols' wire codec: every message round-trips, and decoding is strict —
anything a peer can send ends in a message that passed every field check, or in
:class:`MalformedMessage`, never in another exception."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.cert import Ballot
from igor_p2p.wire.codec import (
    MAX_CHAIN_BLOBS,
    MAX_EPOCH,
    MAX_FRAME_BYTES,
    MAX_REASON_CHARS,
    MalformedMessage,
    Message,
    encode,
)
from igor_p2p.wire.messages import (
    MESSAGES,
    Abort,
    Accept,
    Accepted,
    Ack,
    Commit,
    Confirm,
    Done,
    GetModule,
    Holding,
    Learn,
    Module,
    Nack,
    NackCode,
    Offer,
    Prepare,
    Promise,
    Refused,
    RefusedCode,
    Reject,
    RejectCode,
    Status,
    StatusReply,
)

NODE = b"\x01" * 32
OTHER = b"\x02" * 32
AGENT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
MID = b"\x03" * 16
DIGEST = b"\x04" * 32
BALLOT = Ballot(3, NODE, b"nonce-01")
RECORD = b"\x96" + b"r" * 40
CHAIN = (b"genesis", b"record", b"cert")

SAMPLES: dict[type[Message], Callable[[], Message]] = {
    Offer: lambda: Offer(NODE, AGENT, MID, 4, 0, CHAIN, b"checkpoint", DIGEST, b"{}", b"\x00asm"),
    Ack: lambda: Ack(NODE, AGENT, MID, 4, DIGEST),
    Reject: lambda: Reject(NODE, AGENT, MID, RejectCode.STALE_EPOCH, "a later epoch is known"),
    Commit: lambda: Commit(NODE, AGENT, MID, RECORD, b"cert"),
    Confirm: lambda: Confirm(NODE, AGENT, MID, 5),
    Abort: lambda: Abort(NODE, AGENT, MID),
    Done: lambda: Done(NODE, AGENT),
    Refused: lambda: Refused(NODE, RefusedCode.RATE_LIMITED, "slow down"),
    Prepare: lambda: Prepare(NODE, AGENT, 5, BALLOT, 2, CHAIN[1:]),
    Promise: lambda: Promise(NODE, AGENT, 5, BALLOT, Ballot(1, OTHER, b"nonce-02"), RECORD),
    Accept: lambda: Accept(NODE, AGENT, 5, BALLOT, RECORD, 0, CHAIN),
    Accepted: lambda: Accepted(NODE, AGENT, 5, BALLOT, DIGEST, b"\x05" * 64),
    Nack: lambda: Nack(NODE, AGENT, 5, NackCode.PROMISED, 4, BALLOT, 0, ()),
    Learn: lambda: Learn(NODE, AGENT, 3, CHAIN[1:]),
    Status: lambda: Status(NODE, AGENT, 0),
    StatusReply: lambda: StatusReply(
        NODE, AGENT, 4, 3, CHAIN[1:], None, None, Holding.CLAIMING, 4, MID
    ),
    GetModule: lambda: GetModule(NODE, DIGEST),
    Module: lambda: Module(NODE, None),
}


def _wire(message: Message) -> dict[str, Any]:
    return message.to_wire()


def _decode_wire(wire: Any) -> Message:
    return MESSAGES.decode(msgpack.packb(wire, use_bin_type=True))


def test_every_message_type_has_a_sample() -> None:
    assert {t.TYPE for t in SAMPLES} == set(MESSAGES.by_type)


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda t: t.TYPE)
def test_every_message_type_round_trips(kind: type[Message]) -> None:
    message = SAMPLES[kind]()
    data = encode(message)
    decoded = MESSAGES.decode(data)
    assert decoded == message
    assert type(decoded) is kind
    assert encode(decoded) == data


def test_optional_fields_round_trip_both_ways() -> None:
    for message in [
        Promise(NODE, AGENT, 2, BALLOT, None, None),
        Nack(NODE, AGENT, 2, NackCode.HIGHER, 5, None, 1, CHAIN[1:]),
        StatusReply(NODE, AGENT, 0, 0, (), BALLOT, RECORD, Holding.NONE, 0, None),
        Offer(NODE, AGENT, MID, 1, 0, CHAIN[:1], b"c", DIGEST, b"{}", None),
        Module(NODE, b"\x00asm"),
        Reject(NODE, AGENT, MID, RejectCode.BUSY, ""),
    ]:
        assert MESSAGES.decode(encode(message)) == message


# --- strictness --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda t: t.TYPE)
def test_a_missing_or_an_extra_key_is_malformed(kind: type[Message]) -> None:
    wire = _wire(SAMPLES[kind]())
    for name in set(kind.FIELDS) - kind.OMITTED_WHEN_NONE:  # those may be absent (None)
        partial = {k: v for k, v in wire.items() if k != name}
        with pytest.raises(MalformedMessage):
            _decode_wire(partial)
    with pytest.raises(MalformedMessage):
        _decode_wire({**wire, "extra": 1})


WRONG_FOR_EVERY_FIELD: list[Any] = [1.5, {"a": 1}, [[1]], msgpack.ExtType(1, b"x")]


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda t: t.TYPE)
def test_no_field_accepts_a_value_of_a_type_it_never_holds(kind: type[Message]) -> None:
    wire = _wire(SAMPLES[kind]())
    for name in kind.FIELDS:
        for value in WRONG_FOR_EVERY_FIELD:
            with pytest.raises(MalformedMessage):
                _decode_wire({**wire, name: value})


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        (Ack, "sender", b"\x01" * 31),
        (Ack, "sender", "01" * 32),
        (Ack, "migration_id", b"\x03" * 17),
        (Ack, "epoch", 0),
        (Ack, "epoch", -1),
        (Ack, "epoch", MAX_EPOCH + 1),
        (Ack, "epoch", True),
        (Ack, "prepared_digest", b""),
        (Ack, "agent", ""),
        (Ack, "agent", "x" * 129),
        (Ack, "agent", b"did"),
        (Reject, "code", "NOT_A_CODE"),
        (Reject, "code", 1),
        (Reject, "reason", "r" * (MAX_REASON_CHARS + 1)),
        (Nack, "code", "higher"),
        (Nack, "chosen", -1),
        (Nack, "promised", [1, NODE]),
        (Prepare, "ballot", [1, NODE, b"short"]),
        (Prepare, "ballot", [1, NODE[:31], b"nonce-01"]),
        (Prepare, "ballot", [-1, NODE, b"nonce-01"]),
        (Prepare, "ballot", [True, NODE, b"nonce-01"]),
        (Prepare, "ballot", {"round": 1}),
        (Prepare, "slot", 0),
        (Prepare, "chain", [b""]),
        (Prepare, "chain", [b"ok", "not bytes"]),
        (Prepare, "chain", b"not a list"),
        (Accept, "record", b""),
        (Accept, "record", b"r" * 4097),
        (Accepted, "signature", b"\x05" * 63),
        (Commit, "cert", b""),
        (Status, "known", -1),
        (StatusReply, "holding", "OWNS"),
        (StatusReply, "migration_id", b"\x03" * 15),
        (Offer, "wasm_hash", b"\x04" * 33),
        (Offer, "chain_after", -1),
        (Refused, "code", "MALFORMED "),
        (GetModule, "wasm_hash", None),
        (Done, "sender", None),
    ],
)
def test_a_field_out_of_its_type_or_range_is_malformed(
    kind: type[Message], field: str, value: Any
) -> None:
    wire = _wire(SAMPLES[kind]())
    with pytest.raises(MalformedMessage, match=field):
        _decode_wire({**wire, field: value})


def test_an_accepted_ballot_and_its_record_come_together() -> None:
    for kind in (Promise, StatusReply):
        wire = _wire(SAMPLES[kind]())
        for ballot, record in ((BALLOT.to_wire(), None), (None, RECORD)):
            one_sided = {**wire, "accepted_ballot": ballot, "accepted_record": record}
            with pytest.raises(MalformedMessage, match="come together"):
                _decode_wire(one_sided)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("empty", b""),
        ("not msgpack", b"\xc1"),
        ("a list", msgpack.packb([1, 2])),
        ("a string", msgpack.packb("OFFER")),
        ("no type", msgpack.packb({"sender": NODE})),
        ("unknown type", msgpack.packb({"type": "OFFER2"})),
        ("type not a string", msgpack.packb({"type": 1})),
        ("integer keys", msgpack.packb({1: 2})),
        ("trailing bytes", encode(SAMPLES[Ack]()) + b"\x00"),
        ("truncated", encode(SAMPLES[Ack]())[:-1]),
        ("too many keys", msgpack.packb({f"k{i}": i for i in range(25)})),
        ("ext type", msgpack.packb(msgpack.ExtType(3, b"x"))),
        ("deep nesting", b"\x91" * 100_000),
    ],
)
def test_a_frame_that_is_not_one_message_map_is_malformed(label: str, data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        MESSAGES.decode(data)


def test_decode_takes_bytes_of_bounded_size_only() -> None:
    with pytest.raises(MalformedMessage):
        MESSAGES.decode(bytearray(encode(SAMPLES[Done]())))  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage):
        MESSAGES.decode(bytes(MAX_FRAME_BYTES + 1))


def test_a_chain_longer_than_the_cap_is_malformed() -> None:
    wire = {**_wire(SAMPLES[Learn]()), "chain": [b"x"] * (MAX_CHAIN_BLOBS + 1)}
    with pytest.raises(MalformedMessage):
        _decode_wire(wire)
    ok = {**_wire(SAMPLES[Learn]()), "chain": [b"x"] * MAX_CHAIN_BLOBS}
    assert len(_decode_wire(ok).chain) == MAX_CHAIN_BLOBS  # type: ignore[attr-defined]


def test_malformed_message_is_invalid_input() -> None:
    assert issubclass(MalformedMessage, InvalidInput)


# --- fuzz --------------------------------------------------------------------------------------

FIELD_NAMES = sorted({name for t in SAMPLES for name in t.FIELDS} | {"type"})
TYPE_NAMES = sorted(MESSAGES.by_type)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(TYPE_NAMES + [c.value for c in (*RejectCode, *NackCode, *Holding)]),
    st.binary(max_size=70),
    st.sampled_from([NODE, MID, DIGEST, b"\x05" * 64, b"nonce-01"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))


@st.composite
def hostile_maps(draw: st.DrawFn) -> dict[str, Any]:
    """An arbitrary map, or a valid message with some fields replaced, dropped or added."""
    if draw(st.booleans()):
        wire = draw(st.dictionaries(keys, values, max_size=12))
        if draw(st.booleans()):
            wire["type"] = draw(st.sampled_from(TYPE_NAMES))
        return wire
    wire = _wire(SAMPLES[draw(st.sampled_from(list(SAMPLES)))]())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        name = draw(st.sampled_from(sorted(wire)))
        if op == "replace":
            wire[name] = draw(values)
        elif op == "drop":
            wire.pop(name)
        else:
            wire[draw(keys)] = draw(values)
    return wire


@given(hostile_maps())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_maps_decode_to_a_checked_message_or_malformed_message_only(
    wire: dict[str, Any],
) -> None:
    data = msgpack.packb(wire, use_bin_type=True)
    try:
        message = MESSAGES.decode(data)
    except MalformedMessage:
        return
    # Whatever got through is a complete, well-typed message that encodes back to itself.
    assert MESSAGES.decode(encode(message)) == message
    assert set(message.to_wire()) == set(wire)


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_random_frames_raise_malformed_message_only(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        MESSAGES.decode(data)
