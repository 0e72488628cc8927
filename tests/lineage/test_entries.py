"""Custody records and tagged lineage entries: codecs, domain separation, hostile input."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.lineage.custody import (
    FORCED_DOMAIN,
    TRANSFER_DOMAIN,
    CorruptCustodyRecord,
    ForcedRecovery,
    TransferRecord,
)
from igor_p2p.lineage.entries import CorruptEntry, WitnessCert, decode_entry, entry_signer
from igor_p2p.lineage.envelope import Checkpoint, CorruptCheckpoint
from igor_p2p.lineage.identity import BadSignature
from igor_p2p.lineage.verify import ProblemCode, verify_lineage

from .builders import NODE_A, NODE_B, NODE_C, WITNESSES, LineageBuilder, happy_lineage, node_keys


def _records() -> tuple[TransferRecord, ForcedRecovery]:
    entries = happy_lineage().entries
    transfer = next(e for e in entries if isinstance(e, TransferRecord))
    forced = next(e for e in entries if isinstance(e, ForcedRecovery))
    return transfer, forced


def test_every_entry_type_round_trips_through_decode_entry() -> None:
    for entry in happy_lineage().entries:
        decoded = decode_entry(entry.encode())
        assert decoded == entry
        assert type(decoded) is type(entry)
        assert decoded.digest() == entry.digest()
        decoded.verify_signature()


def test_each_entry_links_to_the_digest_of_the_one_before() -> None:
    entries = happy_lineage().entries
    for before, after in itertools.pairwise(entries):
        assert after.prev == before.digest()


def test_custody_records_are_signed_over_their_own_domain() -> None:
    transfer, forced = _records()
    assert transfer.signing_bytes().startswith(TRANSFER_DOMAIN)
    assert forced.signing_bytes().startswith(FORCED_DOMAIN)
    assert transfer.signer == transfer.from_node
    assert forced.signer == forced.node


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("from_epoch", 5),
        ("to_epoch", 9),
        ("to_node", b"\x09" * 32),
        ("prev", b"\x08" * 32),
        ("migration_id", b"\x07" * 16),
        ("wall_ns", 12),
    ],
)
def test_changing_a_transfer_field_breaks_its_signature(field_name: str, value: object) -> None:
    transfer, _ = _records()
    with pytest.raises(BadSignature):
        dataclasses.replace(transfer, **{field_name: value}).verify_signature()


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("to_epoch", 9), ("node", NODE_B.public_key), ("forced_by", "mallory"), ("reason", "x")],
)
def test_changing_a_forced_recovery_field_breaks_its_signature(
    field_name: str, value: object
) -> None:
    _, forced = _records()
    with pytest.raises(BadSignature):
        dataclasses.replace(forced, **{field_name: value}).verify_signature()


def test_transfer_signed_by_the_wrong_key_does_not_verify() -> None:
    transfer, _ = _records()
    forged = TransferRecord(
        **{
            **{f: getattr(transfer, f) for f in TransferRecord.__dataclass_fields__},
            "signature": NODE_C.sign(transfer.signing_bytes()),
        }
    )
    with pytest.raises(BadSignature):
        forged.verify_signature()


def test_decode_entry_rejects_unknown_tags_and_non_entries() -> None:
    for data in [
        msgpack.packb(["igor/other/1", 1]),
        msgpack.packb([]),
        msgpack.packb([1, 2, 3]),
        msgpack.packb("igor/ckpt/1"),
        b"\x04" + bytes(208),
    ]:
        with pytest.raises(CorruptEntry):
            decode_entry(data)


def test_type_specific_decoders_reject_other_entry_types() -> None:
    transfer, forced = _records()
    with pytest.raises(CorruptCheckpoint):
        Checkpoint.decode(transfer.encode())
    with pytest.raises(CorruptCustodyRecord):
        TransferRecord.decode(forced.encode())
    with pytest.raises(CorruptCustodyRecord):
        ForcedRecovery.decode(transfer.encode())


@pytest.mark.parametrize(
    ("index", "value"),
    [(2, 0), (3, True), (4, b"\x00" * 31), (7, b"\x00" * 15), (8, 2**63), (9, b"")],
)
def test_malformed_transfer_fields_raise_corrupt_custody_record(index: int, value: object) -> None:
    transfer, _ = _records()
    items = msgpack.unpackb(transfer.encode())
    items[index] = value
    with pytest.raises(CorruptCustodyRecord):
        decode_entry(msgpack.packb(items, use_bin_type=True))


def test_overlong_forced_recovery_reason_is_rejected() -> None:
    _, forced = _records()
    items = msgpack.unpackb(forced.encode())
    items[7] = "r" * 2000
    with pytest.raises(CorruptCustodyRecord):
        decode_entry(msgpack.packb(items, use_bin_type=True))


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_random_bytes_never_escape_decode_entry_untyped(data: bytes) -> None:
    with contextlib.suppress(CorruptEntry):
        decode_entry(data)


_ENCODED = [e.encode() for e in happy_lineage().entries]


@given(
    st.sampled_from(_ENCODED),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
@settings(max_examples=400)
def test_mutated_entries_decode_canonically_or_raise_corrupt_entry(
    data: bytes, edits: list[tuple[int, int]]
) -> None:
    mutated = bytearray(data)
    for pos, value in edits:
        mutated[pos % len(mutated)] = value
    try:
        entry = decode_entry(bytes(mutated))
    except CorruptEntry:
        return
    assert entry.encode() == bytes(mutated)


# --- v2: witnesses and resumes ------------------------------------------------------------------


def test_every_custody_record_names_the_witness_set_of_the_epoch_it_starts() -> None:
    transfer, forced = _records()
    for record in (transfer, forced):
        assert record.witnesses == node_keys(WITNESSES)
        with pytest.raises(BadSignature):
            dataclasses.replace(record, witnesses=record.witnesses[1:]).verify_signature()


def test_a_self_transfer_is_a_resume_and_a_handoff_is_not() -> None:
    b = LineageBuilder()
    b.genesis()
    resume = b.transfer(NODE_A)
    b.handoff()
    handoff = b.transfer(NODE_B)
    assert resume.is_resume and resume.owner == NODE_A.public_key
    assert not handoff.is_resume and handoff.owner == NODE_B.public_key
    assert verify_lineage(b.entries).valid


def test_a_resume_may_not_directly_follow_another_custody_record() -> None:
    b = LineageBuilder()
    b.genesis()
    b.transfer(NODE_A, certify=False)
    b.transfer(NODE_A, certify=False, from_epoch=1, to_epoch=2)
    assert ProblemCode.TRANSFER_MISMATCH in verify_lineage(b.entries).codes()


def test_a_forced_recovery_is_owned_by_its_node() -> None:
    _, forced = _records()
    assert forced.owner == forced.node == forced.signer == NODE_C.public_key


@pytest.mark.parametrize(
    "witnesses",
    [
        [b"\x01" * 32, b"\x00" * 32],  # unsorted
        [b"\x01" * 32] * 2,  # duplicate
        [bytes([i]) * 32 for i in range(8)],  # eight
        b"\x01" * 32,  # not a list
    ],
)
def test_a_malformed_witness_set_in_a_record_is_corrupt(witnesses: object) -> None:
    transfer, _ = _records()
    items = msgpack.unpackb(transfer.encode())
    items[9] = witnesses
    with pytest.raises(CorruptCustodyRecord):
        decode_entry(msgpack.packb(items, use_bin_type=True))


def test_a_certificate_round_trips_through_decode_entry_and_names_no_signer() -> None:
    cert = next(e for e in happy_lineage().entries if isinstance(e, WitnessCert))
    assert decode_entry(cert.encode()) == cert
    assert entry_signer(cert) == b""
