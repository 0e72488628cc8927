"""The export-to-Go record: encoding, signature, and where the verifier accepts it."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.lineage.custody import CorruptCustodyRecord
from igor_p2p.lineage.entries import CorruptEntry, ExportRecord, decode_entry
from igor_p2p.lineage.export import UnsignedExportRecord
from igor_p2p.lineage.identity import BadSignature
from igor_p2p.lineage.verify import ProblemCode, verify_lineage

from .builders import MALLORY, NODE_B, LineageBuilder, happy_lineage


def _exported() -> LineageBuilder:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.migrate(NODE_B)
    b.tick_checkpoint()
    b.export()
    return b


def test_the_record_round_trips_and_is_signed_by_the_custodian() -> None:
    b = _exported()
    record = b.entries[-1]
    assert isinstance(record, ExportRecord)
    assert decode_entry(record.encode()) == record
    assert record.signer == NODE_B.public_key
    record.verify_signature()
    forged = dataclasses.replace(record, tick=record.tick + 1)
    with pytest.raises(BadSignature):
        forged.verify_signature()


def test_a_lineage_ending_in_an_export_is_valid_and_reports_it() -> None:
    b = _exported()
    report = verify_lineage([e.encode() for e in b.entries])
    assert report.valid, report.problems
    (export,) = report.exports
    assert (export.epoch, export.tick) == (2, b.tick)
    assert report.head == export.digest()
    assert report.to_json()["exports"][0]["go_checkpoint"] == (b"\x60" * 32).hex()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"signer": MALLORY, "owner": MALLORY.public_key}, ProblemCode.WRONG_SIGNER),
        ({"epoch": 1}, ProblemCode.TRANSFER_MISMATCH),
        ({"tick": 3}, ProblemCode.TRANSFER_MISMATCH),
    ],
)
def test_an_export_that_does_not_fit_its_place_is_invalid(change: dict, code: ProblemCode) -> None:
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.migrate(NODE_B)
    b.tick_checkpoint()
    b.export(**change)
    assert code in verify_lineage(b.entries).codes()


def test_nothing_may_follow_an_export() -> None:
    b = happy_lineage()
    b.entries.pop()  # the FINAL
    b.export()
    b.final()
    assert ProblemCode.AFTER_EXPORT in verify_lineage(b.entries).codes()


def test_records_with_bad_fields_cannot_be_built() -> None:
    b = _exported()
    values = {
        f.name: getattr(b.entries[-1], f.name)
        for f in dataclasses.fields(b.entries[-1])
        if f.name != "signature"
    }
    for bad in ({"go_checkpoint": b"short"}, {"epoch": 0}, {"tick": -1}, {"agent": "nope"}):
        with pytest.raises(CorruptCustodyRecord):
            UnsignedExportRecord(**(values | bad))


@given(st.binary(max_size=400))
@settings(max_examples=200)
def test_random_bytes_after_the_export_tag_stay_typed(data: bytes) -> None:
    encoded = _exported().entries[-1].encode()
    with contextlib.suppress(CorruptEntry):
        decode_entry(encoded[:20] + data)
