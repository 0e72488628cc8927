from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import ABSENT, RejectCode
from igor_p2p.errors import InvalidInput
from igor_p2p.handoff.messages import (
    Abort,
    Ack,
    Commit,
    Confirm,
    MalformedMessage,
    Message,
    Offer,
    Reject,
    StatusQuery,
    StatusReply,
    decode,
    encode,
    from_wire,
)

MID = bytes(range(16))
D = bytes(32)
SAMPLES = [
    Offer("peerA", "did:key:z6Mk", 1, MID, b"ckpt", (b"e1", b"e2"), D, b"{}", None),
    Offer("peerA", "did:key:z6Mk", 7, MID, b"ckpt", (), D, b"{}", b"\x00asm"),
    Ack("peerB", "did:key:z6Mk", 1, MID, D),
    Reject("peerB", "did:key:z6Mk", MID, RejectCode.BUSY),
    Commit("peerA", "did:key:z6Mk", MID, b"record"),
    Confirm("peerB", "did:key:z6Mk", MID, 2),
    Abort("peerA", "did:key:z6Mk", MID),
    StatusQuery("peerB", "did:key:z6Mk", None, 1),
    StatusReply("peerA", "did:key:z6Mk", AuthorityState.RETIRED, 1, MID, b"record", D),
    StatusReply("peerA", "did:key:z6Mk", ABSENT, 0, None, None, None),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TYPE.value)
def test_every_message_round_trips(message) -> None:
    wire = message.to_wire()
    assert wire["type"] == message.TYPE.value
    assert decode(encode(message)) == message


def test_wrong_migration_id_length_is_rejected() -> None:
    wire = Abort("peerA", "a", MID).to_wire() | {"migration_id": b"short"}
    with pytest.raises(MalformedMessage):
        from_wire(wire)


def test_extra_or_missing_keys_are_rejected() -> None:
    wire = Confirm("peerB", "a", MID, 2).to_wire()
    with pytest.raises(MalformedMessage):
        from_wire(wire | {"extra": 1})
    del wire["new_epoch"]
    with pytest.raises(MalformedMessage):
        from_wire(wire)


def test_bool_and_zero_epochs_are_rejected() -> None:
    for bad in (True, 0, -1, 2**63, "1"):
        with pytest.raises(MalformedMessage):
            from_wire(Confirm("peerB", "a", MID, 2).to_wire() | {"new_epoch": bad})


def test_unknown_reject_code_is_rejected() -> None:
    with pytest.raises(MalformedMessage):
        from_wire(Reject("b", "a", MID, RejectCode.BUSY).to_wire() | {"code": "NOPE"})


def test_transfer_record_only_with_retired() -> None:
    wire = SAMPLES[8].to_wire() | {"state": "ACTIVE_OWNER"}
    with pytest.raises(MalformedMessage):
        from_wire(wire)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_typed_error_or_a_message(data: bytes) -> None:
    try:
        result = decode(data)
    except InvalidInput:
        return
    assert isinstance(result, Message)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_fields_give_a_typed_error_or_a_valid_message(message, data) -> None:
    wire = message.to_wire()
    key = data.draw(st.sampled_from(sorted(wire)))
    wire[key] = data.draw(
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=40),
            st.text(max_size=10),
            st.booleans(),
            st.lists(st.integers(0, 9), max_size=3),
        )
    )
    try:
        result = decode(msgpack.packb(wire, use_bin_type=True))
    except InvalidInput:
        return
    assert decode(encode(result)) == result
