"""The one durable authority record per agent: its encoding and the columns derived from it
(igor_p2p.authority.record)."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.authority.record import (
    ABSENT,
    NO_RECORD,
    RECORD_TAG,
    AuthorityRecord,
    Columns,
    CorruptRecord,
    PendingCopy,
    RecoveryReason,
    Successor,
    columns,
    decode_record,
    encode_record,
)
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import InvalidInput

S = AuthorityState
NODE = b"\x01" * 32
SOURCE = b"\x02" * 32
HEAD = b"\x03" * 32
MID = b"\x04" * 16

keys = st.binary(min_size=32, max_size=32)
epochs = st.integers(0, 2**63 - 1)
records = st.builds(
    AuthorityRecord,
    state=st.sampled_from([*AuthorityState, ABSENT]),
    epoch=epochs,
    witnesses=st.lists(keys, max_size=7).map(tuple),
    pending=st.none() | st.builds(PendingCopy, st.binary(min_size=16, max_size=16), keys, keys),
    successor=st.none() | st.builds(Successor, epochs, keys),
    last_migration=st.none() | st.binary(min_size=16, max_size=16),
    reason=st.none() | st.sampled_from(list(RecoveryReason)),
    detail=st.text(max_size=200),
    version=epochs,
)


@given(records)
@settings(max_examples=300)
def test_every_record_round_trips_through_its_encoding(record: AuthorityRecord) -> None:
    assert decode_record(encode_record(record)) == record


def test_the_encoding_is_tagged() -> None:
    assert msgpack.unpackb(encode_record(NO_RECORD))[0] == RECORD_TAG


def _body(**changes: object) -> list:
    record = AuthorityRecord(
        state=S.HANDOFF_PENDING,
        epoch=3,
        witnesses=(NODE,),
        pending=PendingCopy(MID, SOURCE, HEAD),
        successor=Successor(4, NODE),
        last_migration=MID,
        reason=RecoveryReason.RESTORED_COPY,
        detail="words",
        version=9,
    )
    body = msgpack.unpackb(encode_record(record))
    names = [
        "tag",
        "state",
        "epoch",
        "witnesses",
        "pending",
        "successor",
        "last",
        "reason",
        "detail",
        "version",
    ]
    for name, value in changes.items():
        body[names.index(name)] = value
    return body


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        b"\x93\x01\x02",
        msgpack.packb({"state": "RETIRED"}),
        msgpack.packb(_body(tag="igor/authority/1")),
        msgpack.packb(_body()[:-1]),
        msgpack.packb(_body(state="OWNER")),
        msgpack.packb(_body(state=1)),
        msgpack.packb(_body(state=[1])),
        msgpack.packb(_body(epoch=-1)),
        msgpack.packb(_body(epoch=True)),
        msgpack.packb(_body(epoch=2**63)),
        msgpack.packb(_body(epoch="3")),
        msgpack.packb(_body(witnesses=b"\x01" * 32)),
        msgpack.packb(_body(witnesses=[b"\x01" * 31])),
        msgpack.packb(_body(witnesses=[NODE] * 8)),
        msgpack.packb(_body(pending=[MID, SOURCE])),
        msgpack.packb(_body(pending=[MID[:15], SOURCE, HEAD])),
        msgpack.packb(_body(pending="pending")),
        msgpack.packb(_body(successor=[4])),
        msgpack.packb(_body(successor=[-4, NODE])),
        msgpack.packb(_body(successor={"epoch": 4})),
        msgpack.packb(_body(last=b"short")),
        msgpack.packb(_body(reason="TIRED")),
        msgpack.packb(_body(reason={"a": 1})),
        msgpack.packb(_body(detail=b"bytes")),
        msgpack.packb(_body(version=None)),
        msgpack.packb(_body()) + b"\x00",
    ],
)
def test_a_record_that_does_not_decode_is_corrupt_record(blob: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_record(blob)


def test_corrupt_record_is_invalid_input() -> None:
    assert issubclass(CorruptRecord, InvalidInput)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_garbage_never_decodes_into_anything_but_corrupt_record(blob: bytes) -> None:
    with contextlib.suppress(CorruptRecord):
        decode_record(blob)


_VALID = encode_record(
    AuthorityRecord(S.RETIRED, 5, (NODE,), None, Successor(6, SOURCE), MID, None, "", 3)
)


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), min_size=1, max_size=4))
@settings(max_examples=300)
def test_a_damaged_record_is_corrupt_record_or_still_a_well_formed_record(
    edits: list[tuple[int, int]],
) -> None:
    damaged = bytearray(_VALID)
    for pos, value in edits:
        damaged[pos % len(damaged)] = value
    try:
        record = decode_record(bytes(damaged))
    except CorruptRecord:
        return
    assert decode_record(encode_record(record)) == record


# --- the fence and the derived columns ---------------------------------------------------------


def test_the_fence_is_the_highest_epoch_the_record_proves() -> None:
    assert NO_RECORD.fence == 0
    assert AuthorityRecord(S.ACTIVE_OWNER, epoch=4).fence == 4
    assert AuthorityRecord(S.RETIRED, epoch=4, successor=Successor(9, NODE)).fence == 9
    assert AuthorityRecord(S.RECOVERY_REQUIRED, epoch=7, successor=Successor(5, NODE)).fence == 7


def test_columns_are_derived_from_the_record_alone() -> None:
    owner = AuthorityRecord(S.ACTIVE_OWNER, epoch=4, version=2)
    assert columns(owner) == Columns("ACTIVE_OWNER", 4, 4, "", None)
    pending = AuthorityRecord(S.HANDOFF_PENDING, epoch=3, pending=PendingCopy(MID, SOURCE, HEAD))
    assert columns(pending) == Columns("HANDOFF_PENDING", 3, 3, "", SOURCE)
    retired = AuthorityRecord(S.RETIRED, epoch=3, successor=Successor(4, NODE))
    assert columns(retired) == Columns("RETIRED", 3, 4, "", NODE)
    halted = AuthorityRecord(
        S.RECOVERY_REQUIRED, epoch=3, reason=RecoveryReason.INTEGRITY_FAILURE, detail=""
    )
    assert columns(halted).reason == "INTEGRITY_FAILURE"
    worded = AuthorityRecord(
        S.RECOVERY_REQUIRED, epoch=3, reason=RecoveryReason.RESTORED_COPY, detail="restored"
    )
    assert columns(worded).reason == "restored"
    assert columns(NO_RECORD) == Columns("ABSENT", 0, 0, "", None)


@given(records)
@settings(max_examples=200)
def test_columns_agree_with_the_record_they_come_from(record: AuthorityRecord) -> None:
    cols = columns(record)
    assert cols.state == record.state.value and cols.epoch == record.epoch
    assert cols.fence == record.fence >= record.epoch
    assert columns(decode_record(encode_record(record))) == cols


def test_a_node_that_never_held_the_agent_has_no_authority() -> None:
    assert NO_RECORD.state is ABSENT and not S.RETIRED.may_tick
    assert [s for s in AuthorityState if s.may_tick] == [S.ACTIVE_OWNER]
