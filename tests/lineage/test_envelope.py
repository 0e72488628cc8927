"""The checkpoint envelope codec: round trip, signature coverage, hostile input."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_ENTRY_BYTES, MAX_STATE_BYTES, CorruptEntry
from igor_p2p.lineage.envelope import (
    FORMAT_TAG,
    SIGNING_DOMAIN,
    Checkpoint,
    CheckpointKind,
    CorruptCheckpoint,
    UnsignedCheckpoint,
)
from igor_p2p.lineage.identity import BadSignature

from .builders import NODE_A, WITNESSES, LineageBuilder, node_keys


def _sample() -> Checkpoint:
    b = LineageBuilder()
    b.genesis()
    return b.tick_checkpoint()


def test_checkpoint_round_trips_and_digest_is_sha256_of_encoding() -> None:
    ck = _sample()
    data = ck.encode()
    assert Checkpoint.decode(data) == ck
    assert ck.digest() == hashlib.sha256(data).digest()
    assert Checkpoint.decode(data).kind is CheckpointKind.TICK


def test_encoding_starts_with_an_array16_header_so_never_a_go_version_byte() -> None:
    data = _sample().encode()
    assert data[:3] == b"\xdc\x00\x10"  # 16 fields: one past what a fixarray holds
    assert data[0] not in (0x02, 0x03, 0x04)
    assert msgpack.unpackb(data)[0] == FORMAT_TAG


def test_signing_bytes_are_domain_tag_plus_every_field_but_the_signature() -> None:
    ck = _sample()
    sb = ck.signing_bytes()
    assert sb.startswith(SIGNING_DOMAIN)
    assert msgpack.unpackb(sb[len(SIGNING_DOMAIN) :]) == msgpack.unpackb(ck.encode())[:-1]
    ck.verify_signature()


_TAMPER = {
    "agent": NODE_A.did,
    "epoch": 7,
    "tick": 999,
    "prev": b"\x01" * 32,
    "kind": CheckpointKind.FINAL,
    "wasm_hash": b"\x02" * 32,
    "manifest_hash": b"\x03" * 32,
    "budget": 1,
    "price": 2,
    "wall_ns": 3,
    "state": b"other state",
    "owner": b"\x04" * 32,
    "signer": b"\x05" * 32,
}


@pytest.mark.parametrize("field_name", sorted(_TAMPER))
def test_changing_any_signed_field_breaks_the_signature(field_name: str) -> None:
    tampered = dataclasses.replace(_sample(), **{field_name: _TAMPER[field_name]})
    with pytest.raises(BadSignature):
        tampered.verify_signature()


def test_unsigned_checkpoint_signs_as_the_given_key() -> None:
    ck = _sample()
    resigned = ck.unsigned.sign(NODE_A)
    assert resigned.signer == NODE_A.public_key
    assert resigned.unsigned == ck.unsigned
    resigned.verify_signature()


def _items() -> list:
    return msgpack.unpackb(_sample().encode())


def _pack(items: list) -> bytes:
    return msgpack.packb(items, use_bin_type=True)


def _with(index: int, value: object) -> bytes:
    items = _items()
    items[index] = value
    return _pack(items)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("empty", b""),
        ("not an array", msgpack.packb({"a": 1})),
        ("go version byte", b"\x04" + bytes(300)),
        ("trailing bytes", _sample().encode() + b"\x00"),
        ("truncated", _sample().encode()[:-1]),
        ("wrong tag", _with(0, "igor/xfer/1")),
        ("too few fields", _pack(_items()[:-1])),
        ("too many fields", _pack([*_items(), 1])),
        ("bad did", _with(1, "did:key:zNotADid")),
        ("epoch zero", _with(2, 0)),
        ("epoch is bool", _with(2, True)),
        ("epoch is float", _with(2, 1.0)),
        ("negative tick", _with(3, -1)),
        ("tick above int64", _with(3, 2**63)),
        ("short prev", _with(4, b"\x00" * 31)),
        ("prev as str", _with(4, "0" * 32)),
        ("unknown kind", _with(5, 9)),
        ("negative budget", _with(8, -5)),
        ("state as list", _with(11, [1, 2])),
        ("witnesses not a list", _with(13, b"\x00" * 32)),
        ("short witness key", _with(13, [b"\x00" * 31])),
        ("short signer", _with(14, b"\x00" * 63)),
        ("short signature", _with(15, b"\x00" * 63)),
        ("ext type", _with(10, msgpack.ExtType(1, b"x"))),
        ("map inside", _with(11, {})),
        ("nested deep", b"\x91" * 100_000),
    ],
)
def test_malformed_checkpoint_raises_corrupt_checkpoint(label: str, data: bytes) -> None:
    with pytest.raises(CorruptCheckpoint):
        Checkpoint.decode(data)


def test_non_canonical_integer_encoding_is_rejected() -> None:
    data = _sample().encode()
    epoch_canonical = b"\x01"  # positive fixint 1, right after the agent string
    agent = _items()[1].encode()
    prefix = b"\xdc\x00\x10" + msgpack.packb(FORMAT_TAG) + msgpack.packb(agent.decode())
    assert data.startswith(prefix + epoch_canonical)
    wide = prefix + b"\xcf" + (1).to_bytes(8, "big") + data[len(prefix) + 1 :]
    assert msgpack.unpackb(wide) == msgpack.unpackb(data)  # same value...
    with pytest.raises(CorruptCheckpoint):  # ...but not the one encoding we accept
        Checkpoint.decode(wide)


def test_oversized_input_is_rejected_before_parsing() -> None:
    with pytest.raises(CorruptCheckpoint):
        Checkpoint.decode(b"\xdc\x00\x10" + bytes(MAX_ENTRY_BYTES))


def test_state_larger_than_cap_cannot_be_built() -> None:
    values = {f: getattr(_sample(), f) for f in UnsignedCheckpoint.__dataclass_fields__}
    values["state"] = bytes(MAX_STATE_BYTES + 1)
    with pytest.raises(CorruptCheckpoint):
        UnsignedCheckpoint(**values)


def test_corrupt_checkpoint_is_invalid_input_and_corrupt_entry() -> None:
    assert issubclass(CorruptCheckpoint, CorruptEntry)
    assert issubclass(CorruptCheckpoint, InvalidInput)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_random_bytes_never_escape_as_anything_but_corrupt_checkpoint(data: bytes) -> None:
    with contextlib.suppress(CorruptCheckpoint):
        Checkpoint.decode(data)


_VALID = _sample().encode()


@st.composite
def _mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=9))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 9))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@given(_mutations())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_encodings_decode_canonically_or_raise_corrupt_checkpoint(data: bytes) -> None:
    try:
        ck = Checkpoint.decode(data)
    except CorruptCheckpoint:
        return
    assert ck.encode() == data  # anything accepted is canonical
    if data != _VALID:
        with pytest.raises(BadSignature):
            ck.verify_signature()


# --- witnesses (v2) ----------------------------------------------------------------------------


def _genesis_values(**changes: object) -> dict:
    b = LineageBuilder()
    values = {f: getattr(b.genesis(), f) for f in UnsignedCheckpoint.__dataclass_fields__}
    values.update(changes)
    return values


def test_genesis_names_the_first_witness_set_sorted_and_signs_it() -> None:
    b = LineageBuilder()
    genesis = b.genesis()
    assert genesis.witnesses == node_keys(WITNESSES)
    assert list(genesis.witnesses) == sorted(genesis.witnesses)
    decoded = Checkpoint.decode(genesis.encode())
    assert decoded.witnesses == genesis.witnesses
    with pytest.raises(BadSignature):
        dataclasses.replace(genesis, witnesses=genesis.witnesses[:2]).verify_signature()


@pytest.mark.parametrize(
    "kind", [CheckpointKind.TICK, CheckpointKind.HANDOFF, CheckpointKind.FINAL]
)
def test_only_a_genesis_or_import_checkpoint_names_witnesses(kind: CheckpointKind) -> None:
    with pytest.raises(CorruptCheckpoint, match="only a GENESIS or IMPORT"):
        UnsignedCheckpoint(**_genesis_values(kind=kind, epoch=1))


def test_an_import_checkpoint_may_name_witnesses() -> None:
    values = _genesis_values(kind=CheckpointKind.IMPORT, prev=b"\x5a" * 32)
    assert UnsignedCheckpoint(**values).witnesses == node_keys(WITNESSES)


@pytest.mark.parametrize(
    ("label", "witnesses"),
    [
        ("unsorted", tuple(reversed(node_keys(WITNESSES)))),
        ("duplicate", (NODE_A.public_key, NODE_A.public_key)),
        ("eight members", tuple(bytes([i]) * 32 for i in range(8))),
        ("short key", (b"\x01" * 31,)),
        ("a list, not a tuple", list(node_keys(WITNESSES))),
    ],
)
def test_a_witness_set_is_at_most_seven_distinct_sorted_node_keys(
    label: str, witnesses: object
) -> None:
    with pytest.raises(CorruptCheckpoint):
        UnsignedCheckpoint(**_genesis_values(witnesses=witnesses))


def test_a_tick_checkpoint_carrying_witnesses_does_not_decode() -> None:
    items = _items()
    items[13] = list(node_keys(WITNESSES))
    with pytest.raises(CorruptCheckpoint):
        Checkpoint.decode(_pack(items))
