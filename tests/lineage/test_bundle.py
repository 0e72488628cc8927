"""The portable agent bundle."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.bundle import BUNDLE_TAG, AgentBundle, CorruptBundle
from igor_p2p.lineage.custody import TransferRecord
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.verify import ProblemCode

from .builders import AGENT_KEY, MANIFEST, WASM, happy_lineage


def _bundle(**changes: object) -> AgentBundle:
    values: dict = {"wasm": WASM, "manifest": MANIFEST, "entries": tuple(happy_lineage().encoded())}
    values.update(changes)
    return AgentBundle(**values)


def test_bundle_round_trips_and_verifies() -> None:
    bundle = _bundle()
    data = bundle.encode()
    assert AgentBundle.decode(data) == bundle
    report = AgentBundle.decode(data).verify(expected_agent=AGENT_KEY.did)
    assert report.valid, report.problems
    assert report.checkpoints == 7


def test_wrong_manifest_is_module_mismatch() -> None:
    report = _bundle(manifest=b"{}").verify()
    assert report.codes() == {ProblemCode.MODULE_MISMATCH}


def test_bundle_with_a_tick_compacted_away_verifies_and_says_so() -> None:
    entries = happy_lineage().encoded()
    report = _bundle(entries=tuple(entries[:2] + entries[3:])).verify()
    assert report.valid, report.problems
    assert len(report.compacted) == 1  # the missing tick rests on the next entry's signer


def test_bundle_missing_a_custody_record_is_invalid() -> None:
    entries = happy_lineage().encoded()
    transfer = next(
        i for i, data in enumerate(entries) if isinstance(decode_entry(data), TransferRecord)
    )
    report = _bundle(entries=tuple(entries[:transfer] + entries[transfer + 1 :])).verify()
    assert not report.valid
    assert ProblemCode.BAD_GAP in report.codes()
    assert not report.compacted


@pytest.mark.parametrize(
    "data",
    [
        b"",
        msgpack.packb([BUNDLE_TAG, b"", b""]),
        msgpack.packb(["igor/bundle/2", b"", b"", []]),
        msgpack.packb([BUNDLE_TAG, "wasm", b"", []]),
        msgpack.packb([BUNDLE_TAG, b"", b"", [1]]),
        msgpack.packb([BUNDLE_TAG, b"", b"", b""]),
        msgpack.packb([BUNDLE_TAG, b"", b"", []]) + b"\x00",
    ],
)
def test_malformed_bundle_raises_corrupt_bundle(data: bytes) -> None:
    with pytest.raises(CorruptBundle):
        AgentBundle.decode(data)
    assert issubclass(CorruptBundle, InvalidInput)


def test_garbage_entry_inside_a_bundle_is_reported_not_raised() -> None:
    report = _bundle(entries=(*happy_lineage().encoded(), b"\x9fjunk")).verify()
    assert report.codes() == {ProblemCode.CORRUPT_ENTRY}


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_random_bytes_never_escape_bundle_decode_untyped(data: bytes) -> None:
    with contextlib.suppress(CorruptBundle):
        AgentBundle.decode(data)
